"""The results store: SQLite, one run row per (model file, plan, task, settings) and one row per
finished document, committed as documents finish. A rerun reuses finished documents; an
interrupted run resumes where it stopped, never losing or duplicating a document.

The schema migrates itself: an append-only list of numbered migrations and a table recording
which ran. A shipped migration is never edited. Every statement is parameterized.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from painters_gguf.errors import PaintersError


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


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


MIGRATIONS = [_m001_initial]


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


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")  # readers and a writer at once; crash-safe
            self.db.execute("PRAGMA busy_timeout=60000")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as err:
            raise PaintersError(f"results store {path}: {err}") from None

    def _migrate(self) -> None:
        with self.transaction():
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_utc TEXT NOT NULL)"
            )
            done = {row[0] for row in self.db.execute("SELECT id FROM migrations")}
            for number, migration in enumerate(MIGRATIONS, 1):
                if number not in done:
                    migration(self.db)
                    self.db.execute(
                        "INSERT INTO migrations (id, name, applied_utc) VALUES (?, ?, ?)",
                        (number, migration.__name__, utc_now()),
                    )

    def transaction(self) -> _Transaction:
        return _Transaction(self.db)

    def run_id(self, key: RunKey) -> int:
        now = utc_now()
        with self.transaction():
            self.db.execute(
                """INSERT OR IGNORE INTO runs (model_sha256, model_name, plan, task, task_version, settings,
                   created_utc, updated_utc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                (key.model_sha256, key.model_name, key.plan, key.task, key.task_version, key.settings_json, now, now),
            )
            row = self.db.execute(
                "SELECT id FROM runs WHERE model_sha256 = ? AND plan = ? AND task = ? AND task_version = ? AND settings = ?",
                (key.model_sha256, key.plan, key.task, key.task_version, key.settings_json),
            ).fetchone()
        return int(row[0])

    def results(self, run_id: int) -> dict[int, dict]:
        rows = self.db.execute("SELECT doc_index, result FROM docs WHERE run_id = ?", (run_id,))
        return {int(index): json.loads(result) for index, result in rows}

    def add(self, run_id: int, results: Iterable[tuple[int, dict]], seconds: float) -> None:
        """Commit finished documents in one transaction; a document already there is kept."""
        now = utc_now()
        with self.transaction():
            self.db.executemany(
                "INSERT OR IGNORE INTO docs (run_id, doc_index, result, created_utc) VALUES (?, ?, ?, ?)",
                [(run_id, index, json.dumps(result), now) for index, result in results],
            )
            self.db.execute("UPDATE runs SET updated_utc = ?, seconds = seconds + ? WHERE id = ?", (now, seconds, run_id))

    def close(self) -> None:
        self.db.close()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (Ctrl-C included)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
