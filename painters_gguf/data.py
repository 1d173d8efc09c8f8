"""Benchmark splits as HF-row-shaped JSONL (or parquet) files in a data directory.

`<data dir>/<folder>/<split>.jsonl` (e.g. `arc_easy/test.jsonl`), one HF dataset row per line.
The data directory is `--data-dir`, else $PAINTERS_GGUF_DATA, else `<user data dir>/datasets`.
A split missing there is downloaded with `datasets` when it is installed and the network allows,
and saved in the same layout.
"""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import Callable
from pathlib import Path

from painters_gguf.errors import PaintersError
from painters_gguf.outputs import make_folder
from painters_gguf.tasks.base import RowError, Split


def local_file(root: Path, split: Split) -> Path | None:
    """The split's file in the data folder, JSONL first (a link too: read_jsonl refuses a broken
    one by name), else Parquet; None: `load_split` downloads it."""
    base = root / split.folder / split.split
    jsonl, parquet = base.with_suffix(".jsonl"), base.with_suffix(".parquet")
    if jsonl.exists() or jsonl.is_symlink():
        return jsonl
    return parquet if parquet.exists() else None


def held_here(root: Path, split: Split) -> bool:
    """Whether the data folder holds the split's file (else `load_split` downloads it)."""
    return local_file(root, split) is not None


def load_split(root: Path, split: Split, check_row: Callable[[dict], None] = lambda row: None) -> list[dict]:
    """A split's rows, every one checked against its fields and by `check_row` (the task's own
    checks); a bad row is one error naming the file, the line and the field."""
    source = local_file(root, split)
    if source is None:
        source = (root / split.folder / split.split).with_suffix(".jsonl")
        numbered = list(enumerate(download(split, source), 1))
    elif source.suffix == ".jsonl":
        numbered = read_jsonl(source)
    else:
        numbered = list(enumerate(read_parquet(source), 1))
    if not numbered:
        raise PaintersError(f"{source}: no rows (a {split.describe()} file needs one JSON object per line)")
    for number, row in numbered:
        try:
            split.check_fields(row)
            check_row(row)
        except RowError as err:
            raise PaintersError(f"{source}:{number}: {err}") from None
    return [row for _, row in numbered]


def regular_file(path: Path) -> Path:
    """Only regular files are read (a FIFO would block forever, a directory cannot be read)."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise PaintersError(f"{path}: {err.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, socket or device)"
        raise PaintersError(f"{path} is {kind}: give a JSONL file")
    return path


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) for every non-blank line, each a JSON object."""
    rows = []
    try:
        with regular_file(path).open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise PaintersError(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno})") from None
                except RecursionError:
                    raise PaintersError(f"{path}:{number}: JSON nested too deeply") from None
                if not isinstance(row, dict):
                    raise PaintersError(f"{path}:{number}: expected a JSON object, found {type(row).__name__}")
                rows.append((number, row))
    except UnicodeDecodeError as err:
        raise PaintersError(f"{path}: not UTF-8 text (byte {err.start} of a line: {err.reason})") from None
    except OSError as err:
        raise PaintersError(f"{path}: {err.strerror}") from None
    return rows


def read_parquet(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq  # optional (its types: ignored in pyproject.toml)
    except ImportError:
        raise PaintersError(f"{path}: reading parquet needs pyarrow (pip install pyarrow), or convert it to .jsonl") from None
    return pq.read_table(path).to_pylist()


def download(split: Split, target: Path) -> list[dict]:
    """Fetch a split from the HF hub with `datasets` and keep it as JSONL beside the others."""
    looked = f"{split.describe()}: no {target} (nor .parquet)"
    try:
        import datasets
    except ImportError:
        raise PaintersError(f"{looked}; put the file there, or pip install 'painters-gguf[hub]' to download it") from None
    datasets.utils.logging.set_verbosity_error()  # their retries and warnings are not the user's to read:
    datasets.utils.logging.disable_progress_bar()  # the outcome is one line, below
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    try:
        rows = [dict(row) for row in datasets.load_dataset(split.hf_path, split.hf_name, split=split.split)]
    except Exception as err:  # network or hub errors: one line for the user
        raise PaintersError(
            f"{looked}, and downloading it failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from None
    make_folder(target.parent, f"saving {split.describe()}")
    part = target.with_suffix(".jsonl.part")
    with part.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    part.replace(target)
    return rows
