"""Benchmark splits as HF-row-shaped JSONL (or parquet) files in a data directory.

`<data dir>/<folder>/<split>.jsonl` (e.g. `arc_easy/test.jsonl`), one HF dataset row per line.
The data directory is `--data-dir`, else $PAINTERS_GGUF_DATA, else `<user data dir>/datasets`.
A split missing there is downloaded with `datasets` when it is installed and the network allows,
and saved in the same layout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from painters_gguf.errors import PaintersError
from painters_gguf.fetch import data_dir as user_data_dir
from painters_gguf.tasks.base import Split


def data_dir(option: str | os.PathLike[str] | None = None) -> Path:
    if option is not None:
        return Path(option).expanduser()
    if os.environ.get("PAINTERS_GGUF_DATA"):
        return Path(os.environ["PAINTERS_GGUF_DATA"]).expanduser()
    return user_data_dir() / "datasets"


def load_split(root: Path, split: Split) -> list[dict]:
    base = root / split.folder / split.split
    jsonl, parquet = base.with_suffix(".jsonl"), base.with_suffix(".parquet")
    if jsonl.exists():
        rows = read_jsonl(jsonl)
        source = jsonl
    elif parquet.exists():
        rows = read_parquet(parquet)
        source = parquet
    else:
        rows = download(split, jsonl)
        source = jsonl
    for number, row in enumerate(rows, 1):
        missing = [field for field in split.fields if field not in row]
        if missing:
            raise PaintersError(f"{source}:{number}: a {split.describe()} row needs field {missing[0]!r}")
    return rows


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise PaintersError(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(row, dict):
                raise PaintersError(f"{path}:{number}: expected a JSON object, found {type(row).__name__}")
            rows.append(row)
    return rows


def read_parquet(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-not-found, unused-ignore]  # optional, untyped
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
    try:
        rows = [dict(row) for row in datasets.load_dataset(split.hf_path, split.hf_name, split=split.split)]
    except Exception as err:  # network or hub errors: one line for the user
        raise PaintersError(
            f"{looked}, and downloading it failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_suffix(".jsonl.part")
    with part.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    part.replace(target)
    return rows
