"""Where painters-gguf keeps things on this machine: one home folder, and what lives in it.

$PAINTERS_GGUF_HOME (default: the user's data folder, ~/.local/share/painters-gguf)
    results.db    the results store ($PAINTERS_GGUF_DB or --db elsewhere)
    models/       downloaded models, each with the record of its last check
    datasets/     benchmark data ($PAINTERS_GGUF_DATA or --data-dir elsewhere)
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from painters_gguf.outputs import expand


def home() -> Path:
    """$PAINTERS_GGUF_HOME, or the user's data folder."""
    return expand(os.environ.get("PAINTERS_GGUF_HOME") or platformdirs.user_data_dir("painters-gguf"))


def default_store() -> Path:
    """The results store when --db is not given: $PAINTERS_GGUF_DB, else results.db at home."""
    return expand(os.environ.get("PAINTERS_GGUF_DB") or home() / "results.db")


def model_cache() -> Path:
    """The folder of downloaded models."""
    return home() / "models"


def data_dir(option: str | os.PathLike[str] | None = None) -> Path:
    """The benchmark data: --data-dir, else $PAINTERS_GGUF_DATA, else datasets/ at home."""
    if option is not None:
        return expand(option)
    if os.environ.get("PAINTERS_GGUF_DATA"):
        return expand(os.environ["PAINTERS_GGUF_DATA"])
    return home() / "datasets"
