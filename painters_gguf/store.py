"""The results store: SQLite, one run row per (model file, plan, task, settings) and one row per
finished document, committed as documents finish. A rerun reuses finished documents; an
interrupted run resumes where it stopped, never losing or duplicating a document.

The schema migrates itself: an append-only list of numbered migrations and a table recording
which ran. A shipped migration is never edited. Every statement is parameterized.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import socket
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from painters_gguf.errors import PaintersError
from painters_gguf.outputs import dumps, make_folder
from painters_gguf.store_schema import (
    MIGRATIONS,
    MIGRATIONS_TABLE,
    SCHEMA_NUMBERS,
    TABLES,
    check_file,
    columns,
    reference_columns,
)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _brief(value: object) -> str:
    """A value read from a store, as one short line: NULL, or its repr cut at 40 characters."""
    text = "NULL" if value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


PIDS = range(1, 2**31)  # a process id (pid_t): 0 and negative numbers name process groups


def lock_timeout() -> float:
    """Seconds to wait for another process's write to finish: $PAINTERS_GGUF_LOCK_TIMEOUT, else 60."""
    text = os.environ.get("PAINTERS_GGUF_LOCK_TIMEOUT", "").strip()
    if not text:
        return 60.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 86400):
        raise PaintersError(f"PAINTERS_GGUF_LOCK_TIMEOUT={text!r}: give seconds, more than 0 and at most 86400")
    return value


@dataclasses.dataclass(frozen=True)
class RunKey:
    model_sha256: str
    model_name: str
    plan: str
    task: str
    task_version: str
    settings: dict

    @property
    def settings_json(self) -> str:
        return json.dumps(self.settings, sort_keys=True, separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class Holding:
    """A run in the store, as `painters-gguf store` lists it."""

    model_name: str
    model_sha256: str
    plan: str
    task: str
    settings: str  # canonical JSON
    documents: int


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: sqlite3.Connection | None = None
        make_folder(path.parent, f"results store {path}")
        check_file(path)
        self.timeout = lock_timeout()
        try:
            with self.errors():
                self.db = sqlite3.connect(path, timeout=self.timeout, isolation_level=None)
                self.db.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
                self.db.execute("PRAGMA foreign_keys=ON")
                self._check_schema()  # before anything is written: a refused file stays as it was
                self.db.execute("PRAGMA journal_mode=WAL")  # readers and a writer at once; crash-safe
                self._migrate()
                self._register()
        except BaseException:
            if self.db is not None:
                self.db.close()
                self.db = None
            raise

    def _register(self) -> None:
        """Note who has the store open (for a lock timeout's message); forget this host's dead
        processes, and rows that name no process."""
        host = socket.gethostname()
        with self.transaction():
            rows = self._conn.execute("SELECT pid, host, command, since_utc FROM writers").fetchall()
            stale = [row[:2] for row in rows if (writer := _writer(row)) is None or (writer[1] == host and not _alive(writer[0]))]
            self._conn.executemany("DELETE FROM writers WHERE pid IS ? AND host IS ?", stale)
            self._conn.execute(
                "INSERT OR REPLACE INTO writers (pid, host, command, since_utc) VALUES (?, ?, ?, ?)",
                (os.getpid(), host, " ".join(sys.argv)[:300], utc_now()),
            )

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """SQLite's errors as one line naming the store; a lock held too long names who holds it."""
        try:
            yield
        except sqlite3.OperationalError as err:
            if "locked" in str(err) or "busy" in str(err):
                raise PaintersError(
                    f"results store {self.path} stayed locked for {self.timeout:g} s by another process"
                    f"{self._holders()}; wait for it to finish, or use another --db"
                ) from None
            raise PaintersError(f"results store {self.path}: {err}") from None
        except sqlite3.DatabaseError as err:
            raise PaintersError(f"results store {self.path}: {err} (move it away, or use another --db)") from None

    def _holders(self) -> str:
        """The other live processes that have the store open: ' (pid 12 on host: command since ...)'."""
        try:
            rows = self._conn.execute("SELECT pid, host, command, since_utc FROM writers").fetchall()
        except sqlite3.Error:
            return ""
        here = socket.gethostname()
        writers = [writer for writer in map(_writer, rows) if writer is not None]
        others = [
            f"pid {pid} on {host}: {command!r} since {since}"
            for pid, host, command, since in writers
            if not (host == here and (pid == os.getpid() or not _alive(pid)))
        ]
        more = [f"{len(others) - 3} more"] if len(others) > 3 else []
        return f" ({'; '.join(others[:3] + more)})" if others else ""

    @property
    def _conn(self) -> sqlite3.Connection:
        if self.db is None:
            raise PaintersError(f"results store {self.path} is closed")
        return self.db

    def _damaged(self, what: str) -> PaintersError:
        return PaintersError(f"results store {self.path} is damaged: {what}; move it away, or use another --db")

    def _check_schema(self) -> None:
        """Refuse, reading only, another program's database (not empty, no `migrations` table), a
        newer painters-gguf's, and one whose schema is not what its migrations make."""
        objects = dict(self._conn.execute("SELECT name, type FROM sqlite_master WHERE name NOT LIKE 'sqlite!_%' ESCAPE '!'"))
        if not objects:
            return  # empty: a new store
        if [column[0] for column in columns(self._conn, "migrations")] != ["id", "name", "applied_utc"]:
            shown = ", ".join(_brief(name) for name in sorted(map(str, objects))[:3]) + (", ..." if len(objects) > 3 else "")
            raise PaintersError(
                f"results store {self.path} is not a painters-gguf results store (an SQLite database holding {shown}): "
                "give another --db"
            )
        expected = reference_columns(len(self._schemas()))
        for table in ("migrations", *TABLES):
            found = columns(self._conn, table) if objects.get(table) == "table" else None
            if found == expected.get(table):
                continue
            if found is None:
                raise self._damaged(f"table {table!r} is missing")
            if table not in expected:
                raise self._damaged(f"table {table!r} is there, though its migration is not recorded")
            raise self._damaged(f"table {table!r} has other columns than painters-gguf gives it")
        triggers = sorted(str(name) for name, kind in objects.items() if kind == "trigger")
        if triggers:
            raise self._damaged(f"it holds trigger {_brief(triggers[0])}, which painters-gguf never makes")

    def _schemas(self) -> set[int]:
        """The migrations the store records as run: 1, 2, ... with none missing; a newer painters-gguf's refused."""
        done = set()
        for (number,) in self._conn.execute("SELECT id FROM migrations"):
            if type(number) is not int or number not in SCHEMA_NUMBERS:
                raise self._damaged(f"its migrations table holds {_brief(number)}, not a schema number")
            done.add(number)
        if done and max(done) > len(MIGRATIONS):
            raise PaintersError(
                f"results store {self.path} was written by a newer painters-gguf (schema {max(done)}, this one knows "
                f"{len(MIGRATIONS)}): upgrade, or use another --db"
            )
        missing = set(range(1, max(done, default=0) + 1)) - done
        if missing:
            raise self._damaged(f"its migrations table records schema {max(done)} but not {min(missing)}")
        return done

    def _migrate(self) -> None:
        with self.transaction():
            self._conn.execute(MIGRATIONS_TABLE)
            done = self._schemas()
            for number, migration in enumerate(MIGRATIONS, 1):
                if number not in done:
                    migration(self._conn)
                    self._conn.execute(
                        "INSERT INTO migrations (id, name, applied_utc) VALUES (?, ?, ?)",
                        (number, migration.__name__, utc_now()),
                    )

    def transaction(self) -> _Transaction:
        return _Transaction(self)

    def run_id(self, key: RunKey) -> int:
        now = utc_now()
        with self.transaction():
            self._conn.execute(
                """INSERT OR IGNORE INTO runs (model_sha256, model_name, plan, task, task_version, settings,
                   created_utc, updated_utc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                (key.model_sha256, key.model_name, key.plan, key.task, key.task_version, key.settings_json, now, now),
            )
            row = self._conn.execute(
                "SELECT id FROM runs WHERE model_sha256 = ? AND plan = ? AND task = ? AND task_version = ? AND settings = ?",
                (key.model_sha256, key.plan, key.task, key.task_version, key.settings_json),
            ).fetchone()
        return self._run_id(None if row is None else row[0])

    def find_run(self, key: RunKey) -> int | None:
        """The run's id if the store has it; writes nothing (for readers such as `report`)."""
        with self.errors():
            row = self._conn.execute(
                "SELECT id FROM runs WHERE model_sha256 = ? AND plan = ? AND task = ? AND task_version = ? AND settings = ?",
                (key.model_sha256, key.plan, key.task, key.task_version, key.settings_json),
            ).fetchone()
        return None if row is None else self._run_id(row[0])

    def _run_id(self, value: object) -> int:
        if type(value) is not int:
            raise self._damaged(f"a run's id is {_brief(value)}, not an integer")
        return value

    def settings_with_results(self, model_sha256: str, plan: str, task: str) -> list[dict]:
        """The settings of the runs of this model, plan and task that hold documents, most first."""
        with self.errors():
            rows = self._conn.execute(
                """SELECT r.settings, COUNT(d.doc_index) AS n FROM runs r JOIN docs d ON d.run_id = r.id
                   WHERE r.model_sha256 = ? AND r.plan = ? AND r.task = ? GROUP BY r.id ORDER BY n DESC""",
                (model_sha256, plan, task),
            ).fetchall()
        found = []
        for text, _ in rows:
            try:
                settings = json.loads(text)
            except (TypeError, ValueError, RecursionError):
                continue  # a damaged row: not a set of settings to offer
            if isinstance(settings, dict):
                found.append(settings)
        return found

    def holdings(self) -> list[Holding]:
        """Every run that holds documents: its model, plan, task, settings and how many documents."""
        with self.errors():
            rows = self._conn.execute(
                """SELECT r.model_name, r.model_sha256, r.plan, r.task, r.settings, COUNT(d.doc_index)
                   FROM runs r JOIN docs d ON d.run_id = r.id GROUP BY r.id
                   ORDER BY r.model_name, r.model_sha256, r.settings, r.plan, r.task"""
            ).fetchall()
        return [
            Holding(str(name), str(sha), str(plan), str(task), str(settings), int(n))
            for name, sha, plan, task, settings, n in rows
        ]

    def doc_indices(self, run_id: int) -> set[int]:
        """The documents a run holds, without reading them (a row whose index is not an integer names none)."""
        with self.errors():
            rows = self._conn.execute("SELECT doc_index FROM docs WHERE run_id = ?", (run_id,)).fetchall()
        return {index for (index,) in rows if type(index) is int}

    def results(self, run_id: int) -> tuple[dict[int, dict], list[int]]:
        """The run's stored documents, and the indices of damaged ones (not a JSON object); a row
        whose index is not an integer names no document and is left out."""
        results, damaged = {}, []
        with self.errors():
            rows = self._conn.execute("SELECT doc_index, result FROM docs WHERE run_id = ?", (run_id,)).fetchall()
        for index, text in rows:
            if type(index) is not int:
                continue
            try:
                result = json.loads(text)
            except (TypeError, ValueError, RecursionError):
                result = None
            if isinstance(result, dict):
                results[index] = result
            else:
                damaged.append(index)
        return results, damaged

    def add(self, run_id: int, results: Iterable[tuple[int, dict]], seconds: float, machine: dict[str, str]) -> None:
        """Commit finished documents in one transaction, with the machine that scored them
        (`machine.describe()`); a document already there is kept."""
        now = utc_now()
        description = json.dumps(machine, sort_keys=True)
        with self.transaction():
            self._conn.execute("INSERT OR IGNORE INTO machines (description) VALUES (?)", (description,))
            (machine_id,) = self._conn.execute("SELECT id FROM machines WHERE description = ?", (description,)).fetchone()
            self._conn.executemany(
                "INSERT OR IGNORE INTO docs (run_id, doc_index, result, created_utc, machine_id) VALUES (?, ?, ?, ?, ?)",
                [(run_id, index, dumps(result), now, machine_id) for index, result in results],
            )
            self._conn.execute("UPDATE runs SET updated_utc = ?, seconds = seconds + ? WHERE id = ?", (now, seconds, run_id))

    def discard(self, run_id: int, indices: Iterable[int]) -> None:
        """Forget damaged documents, so that they are scored again."""
        with self.transaction():
            self._conn.executemany("DELETE FROM docs WHERE run_id = ? AND doc_index = ?", [(run_id, i) for i in indices])

    def close(self) -> None:
        if self.db is not None:
            try:
                with self.transaction():
                    self.db.execute("DELETE FROM writers WHERE pid = ? AND host = ?", (os.getpid(), socket.gethostname()))
            except PaintersError:
                pass  # still locked by another process: its row stays until a lock error reads it as stale
            self.db.close()
            self.db = None


def _writer(row: tuple[object, ...]) -> tuple[int, str, str, str] | None:
    """A `writers` row as (pid, host, command, since), or None where it is not one painters-gguf
    writes: a pid out of range, a host not printable, a command too long, a time not ISO 8601."""
    pid, host, command, since = row
    if type(pid) is not int or pid not in PIDS or not isinstance(host, str) or not isinstance(command, str):
        return None
    if not isinstance(since, str) or not (host.isprintable() and len(host) <= 255 and len(command) <= 300):
        return None
    try:
        datetime.datetime.fromisoformat(since)
    except ValueError:
        return None
    return pid, host, command, since


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (Ctrl-C included); SQLite's errors
    become one line naming the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.errors = store.errors()

    def __enter__(self) -> None:
        self.errors.__enter__()
        try:
            self.store._conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            self.errors.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool | None:
        try:
            self.store._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
        except sqlite3.Error as err:
            if self.store._conn.in_transaction:  # a COMMIT that failed (busy) leaves the transaction open
                with contextlib.suppress(sqlite3.Error):
                    self.store._conn.execute("ROLLBACK")
            if exc is None:
                exc_type, exc = type(err), err
        return self.errors.__exit__(exc_type, exc, tb)  # type: ignore[arg-type]
