"""The results store's schema and the file it lives in: the numbered migrations (append-only: a
shipped one is never edited), the columns each schema's tables have, and the checks a path passes
before SQLite opens it (so that a refused file is left exactly as it was)."""

from __future__ import annotations

import functools
import sqlite3
import stat
from pathlib import Path

from painters_gguf.errors import PaintersError


def _m001_initial(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            model_sha256 TEXT NOT NULL,
            model_name TEXT NOT NULL,
            plan TEXT NOT NULL,            -- canonical plan text; the full model is its identity plan
            task TEXT NOT NULL,
            task_version TEXT NOT NULL,
            settings TEXT NOT NULL,        -- canonical JSON of what changes the results
            created_utc TEXT NOT NULL,
            updated_utc TEXT NOT NULL,
            seconds REAL NOT NULL DEFAULT 0,
            UNIQUE (model_sha256, plan, task, task_version, settings)
        )"""
    )
    db.execute(
        """CREATE TABLE docs (
            run_id INTEGER NOT NULL REFERENCES runs (id),
            doc_index INTEGER NOT NULL,    -- index in the task's evaluation split
            result TEXT NOT NULL,          -- JSON: metrics, log-likelihoods or generated text, target
            created_utc TEXT NOT NULL,
            PRIMARY KEY (run_id, doc_index)
        )"""
    )


def _m002_writers(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE writers (
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            command TEXT NOT NULL,
            since_utc TEXT NOT NULL,
            PRIMARY KEY (pid, host)
        )"""
    )


def _m003_machines(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE machines (
            id INTEGER PRIMARY KEY,
            description TEXT NOT NULL UNIQUE  -- canonical JSON: host, CPU and its features, GPUs, library build
        )"""
    )
    db.execute("ALTER TABLE docs ADD COLUMN machine_id INTEGER REFERENCES machines (id)")  # NULL: scored before it was recorded


MIGRATIONS = [_m001_initial, _m002_writers, _m003_machines]
TABLES = ("runs", "docs", "writers", "machines")
MIGRATIONS_TABLE = "CREATE TABLE IF NOT EXISTS migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_utc TEXT NOT NULL)"
SCHEMA_NUMBERS = range(1, 10_000)  # a migration's number: far more than painters-gguf will ever ship
SQLITE_HEADER = b"SQLite format 3\x00"  # the first bytes of every SQLite database file


@functools.cache
def reference_columns(schema: int) -> dict[str, list[tuple[object, ...]]]:
    """Each table's columns as the first `schema` migrations make them, in an empty database."""
    db = sqlite3.connect(":memory:")
    try:
        db.execute(MIGRATIONS_TABLE)
        for migration in MIGRATIONS[:schema]:
            migration(db)
        return {name: columns(db, name) for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.close()


def columns(db: sqlite3.Connection, table: str) -> list[tuple[object, ...]]:
    return db.execute('SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?)', (table,)).fetchall()


def check_file(path: Path) -> None:
    """Refuse, before SQLite opens it, a path that is not a regular file (SQLite would write a
    journal beside it) and a file that is neither empty (a new store) nor SQLite's (SQLite takes
    one of a few bytes for an empty database, and overwrites it)."""
    head = SQLITE_HEADER
    try:
        mode = path.stat().st_mode
        if stat.S_ISREG(mode):
            with path.open("rb") as file:
                head = file.read(len(SQLITE_HEADER)) or SQLITE_HEADER
    except FileNotFoundError:
        return  # a new store
    except OSError as err:
        raise PaintersError(f"results store {path}: {err.strerror}") from None
    if stat.S_ISDIR(mode):
        raise PaintersError(f"results store {path} is a directory: give a file (--db)")
    if not stat.S_ISREG(mode):
        raise PaintersError(f"results store {path} is not a regular file: give a file (--db)")
    if head != SQLITE_HEADER:
        raise PaintersError(f"results store {path}: file is not a database (move it away, or use another --db)")
