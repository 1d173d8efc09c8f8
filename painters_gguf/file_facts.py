"""What was learned about a file, remembered for as long as the file is unchanged.

A model file is checked by a child process (`gguf_check`) and hashed (`Model.sha256`); neither is
repeated while the file keeps its stamp: size, modification and change times, inode and device (a
file rewritten in place changes its change time even when its modification time is put back).
The facts live in `file-facts.json` at home, keyed by the file's real path; a record that cannot
be read or written only costs the work again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from painters_gguf import outputs, paths

FACTS_FILE = "file-facts.json"
MAX_FILES = 256  # the newest kept


def stamp(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def recall(path: Path) -> dict[str, object]:
    """The facts remembered for the file as it is now (none if it changed since)."""
    record = _read().get(os.path.realpath(path))
    if not isinstance(record, dict) or record.get("stamp") != stamp(path):
        return {}
    return record


def remember(path: Path, **facts: object) -> None:
    """Add facts about the file as it is now (those of an earlier state are dropped)."""
    records = _read()
    key = os.path.realpath(path)
    now = stamp(path)
    record = records.pop(key, None)
    kept = record if isinstance(record, dict) and record.get("stamp") == now else {"stamp": now}
    records[key] = {**kept, **facts}  # the newest last: the oldest are forgotten first
    _write(dict(list(records.items())[-MAX_FILES:]))


def _read() -> dict[str, object]:
    try:
        data = json.loads((paths.home() / FACTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(records: dict[str, object]) -> None:
    try:
        paths.home().mkdir(parents=True, exist_ok=True)
        with outputs.replaced(paths.home() / FACTS_FILE) as part:
            part.write_text(json.dumps(records))
    except OSError:
        pass
