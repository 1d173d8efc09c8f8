"""Files written for the user (results JSON, sample logs, similarity matrices, figures): checked
before any work starts, written whole or not at all.

An output may not be an input of the same run (the results store, the model, the benchmark data),
nor anything but a regular file (a directory, a FIFO, a device, a symbolic link); missing parent
folders are created; the folder must be writable. Files are written to a temporary name beside
the target and renamed over it, so a full disk or a crash never leaves half a file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import signal
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from painters_gguf.errors import PaintersError


def expand(path: str | os.PathLike[str]) -> Path:
    """`~` and `~user` expanded; an unknown user is an error, not a traceback."""
    try:
        return Path(path).expanduser()
    except RuntimeError as err:  # Path.expanduser: "Could not determine home directory."
        raise PaintersError(f"{path}: {err}") from None


@dataclasses.dataclass(frozen=True)
class RunInputs:
    """What a run reads, which none of its outputs may be: files (the model, results stores, a
    matrix read back; SQLite's -wal, -shm and -journal files beside each count too) and folders
    whose every file is an input (the benchmark data, the model cache)."""

    files: tuple[Path, ...] = ()
    folders: tuple[tuple[str, Path], ...] = ()  # (what it is, the folder)

    def check(self, path: str | os.PathLike[str], what: str) -> Path:
        """`check_output` against these inputs."""
        return check_output(path, what, inputs=self.files, input_dirs=self.folders)


def check_output(
    path: str | os.PathLike[str], what: str, *, inputs: Iterable[Path] = (), input_dirs: Iterable[tuple[str, Path]] = ()
) -> Path:
    """The path to write `what` to, refused if writing there would destroy something.

    `inputs` are files of this run (store, model); `input_dirs` are folders whose files are inputs
    (the benchmark data, the model cache), each with what it is. Creates missing parent folders; checks the folder is writable.
    """
    path = expand(path)
    try:
        st: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as err:  # e.g. a path under a regular file: ENOTDIR
        raise PaintersError(f"{what} {path}: {err.strerror}") from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise PaintersError(f"{what} {path} is a symbolic link: give the file it points to, or another name")
        if stat.S_ISDIR(st.st_mode):
            raise PaintersError(f"{what} {path} is a directory: give a file name")
        if not stat.S_ISREG(st.st_mode):
            raise PaintersError(f"{what} {path} is not a regular file (a FIFO, socket or device): give a file name")
    for other in inputs:
        if _same_file(path, other):
            raise PaintersError(f"{what} {path} is {other.name}, an input of this run: writing there would destroy it")
    for label, folder in input_dirs:
        if _inside(path, folder):
            raise PaintersError(f"{what} {path} is inside {label} {folder}: give a path outside it")
    make_folder(path.parent, f"the folder of {what} {path}")
    if not os.access(path.parent, os.W_OK):
        raise PaintersError(f"{what} {path}: the folder {path.parent} is not writable")
    if st is not None and not os.access(path, os.W_OK):
        raise PaintersError(f"{what} {path} exists and is not writable")
    return path


def results_file(option: str | os.PathLike[str], name: str, filename: str, inputs: RunInputs, what: str) -> Path:
    """Where a results option (eval's, search's -o) writes, as lm-eval's --output_path: a path
    ending in .json is the file itself; anything else is a folder (created) that gets
    <folder>/<name>/<filename>. `name` (a model's, from outside) is made a plain folder name that
    cannot lead out of the folder. Checked against the run's `inputs`."""
    path = expand(option)
    is_folder = path.is_dir() or str(option).endswith(("/", os.sep))
    if path.suffix.lower() == ".json" and not is_folder:
        return inputs.check(path, what)
    if not is_folder and (os.path.lexists(path) or any(_same_file(path, file) for file in inputs.files)):
        inputs.check(path, what)  # an input of the run, a link, a FIFO: refused as what it is
        raise PaintersError(
            f"{what} {path} is a file: a name not ending in .json is a folder for the results (as lm-eval's "
            "--output_path); give a .json file name or a folder"
        )
    safe = re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name).lstrip(".") or "model"
    return inputs.check(path / safe / filename, what)


def make_folder(folder: Path, what: str) -> None:
    """mkdir -p, with one clear line when a part of the path is a file or not writable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise PaintersError(f"{what}: {folder} exists and is not a folder") from None
    except OSError as err:
        raise PaintersError(f"{what}: cannot create {folder} ({err.strerror})") from None


def _same_file(path: Path, other: Path) -> bool:
    """Whether path is other, or one of SQLite's files beside it (-wal, -shm, -journal)."""
    candidates = [other, *(other.with_name(other.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]
    for candidate in candidates:
        try:
            if path.exists() and candidate.exists() and path.samefile(candidate):
                return True
        except OSError:
            pass
        if os.path.abspath(path) == os.path.abspath(candidate):
            return True
    return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))
    except OSError:
        return False


def write_text(path: Path, chunks: Iterable[str]) -> None:
    """Write the chunks to a temporary file beside path and rename it over path."""
    _write(path, (chunk.encode("utf-8") for chunk in chunks))


def write_bytes(path: Path, data: bytes) -> None:
    _write(path, [data])


def _write(path: Path, chunks: Iterable[bytes]) -> None:
    try:
        with replaced(path) as part, open(part, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
    except OSError as err:
        raise PaintersError(
            f"could not write {path} ({err.strerror}); the scores are in the results store: run the same command again"
        ) from None


@contextlib.contextmanager
def replaced(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` for the block to write; when the block ends without an
    error it is synced and renamed over `path` (with the mode a new file gets, or the old one's),
    else removed: a full disk, Ctrl-C, SIGTERM or SIGHUP never leaves half a file (a crash or
    SIGKILL leaves the temporary `.NAME.*`, never a `path` that was not written whole)."""
    with _termination_unwinds():
        part: Path | None = None
        try:
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            part = Path(name)
            os.close(fd)
            yield part
            fd = os.open(part, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            # a temporary file is private (0600): give the result the mode a new file gets, or the old one's
            os.chmod(part, stat.S_IMODE(os.stat(path).st_mode) if path.exists() else 0o666 & ~_umask())
            os.replace(part, path)
        finally:
            if part is not None:
                part.unlink(missing_ok=True)


TERMINATIONS = tuple(signal.Signals[name] for name in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, name))


class _Terminated(BaseException):
    """A termination signal, raised so that `finally` clauses run before the process ends by it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _termination_unwinds() -> Iterator[None]:
    """While the block runs, a termination signal that would end the process on the spot (its
    handler the default) first unwinds the block, so that its `finally` clauses clean up, and then
    ends the process as the signal does (further ones are ignored meanwhile); the handlers are
    restored after. An ignored signal (`nohup`) stays ignored, a handler of the program's (Python's
    Ctrl-C) stays. Main thread only: the only one that may set handlers, and the one that runs them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    installed = [signum for signum in TERMINATIONS if signal.getsignal(signum) is signal.SIG_DFL]

    def terminate(signum: int, frame: object) -> None:
        for other in installed:
            signal.signal(other, signal.SIG_IGN)
        raise _Terminated(signum)

    try:
        for signum in installed:
            signal.signal(signum, terminate)
        yield
    except _Terminated as terminated:
        _restore_defaults(installed)
        signal.raise_signal(terminated.signum)  # the default action: the process ends here
        raise SystemExit(128 + terminated.signum) from None  # were it handled elsewhere meanwhile
    finally:
        _restore_defaults(installed)


def _restore_defaults(signals: list[signal.Signals]) -> None:
    """The default handlers back, with the signals held meanwhile (one arriving then is taken after,
    by the default handler, not by ours halfway through)."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        for signum in signals:
            signal.signal(signum, signal.SIG_DFL)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def finite(value: object) -> object:
    """JSON-ready: NaN and infinities become None (JSON has no NaN), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def dumps(value: object, **kwargs: object) -> str:
    """Always valid JSON (allow_nan=False after replacing non-finite numbers)."""
    return json.dumps(finite(value), allow_nan=False, ensure_ascii=False, **kwargs)  # type: ignore[arg-type]
