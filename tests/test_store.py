"""The results store's schema moves forward in place: a store written before machines were
recorded keeps its documents, which stay unattributed, and records the machine of new ones.
Hostile stores and paths are refused in one line, the file left as it was; advisory rows that
name no process are forgotten; rows of the wrong type are never trusted."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import stat
from pathlib import Path
from unittest.mock import ANY

import pytest

from painters_gguf import store as store_module
from painters_gguf.errors import PaintersError
from painters_gguf.store import MIGRATIONS, RunKey, Store

MACHINE = {"host": "h", "cpu": "c", "features": "CPU : AVX2 = 1 |", "gpus": "none", "library": "l"}


def test_a_schema_2_store_gains_machines_and_keeps_its_documents(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as con:  # as painters-gguf wrote it before migration 3
        con.execute("CREATE TABLE migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_utc TEXT NOT NULL)")
        for number, migration in enumerate(store_module.MIGRATIONS[:2], 1):
            migration(con)
            con.execute("INSERT INTO migrations VALUES (?, ?, '2026-01-01')", (number, migration.__name__))
        con.execute("INSERT INTO runs VALUES (1, 'sha', 'm.gguf', '0-3', 'arc_easy', '1', '{}', 't', 't', 0)")
        con.execute("""INSERT INTO docs VALUES (1, 0, '{"acc": 1.0}', 't')""")
    store = Store(db)
    try:
        key = RunKey("sha", "m.gguf", "0-3", "arc_easy", "1", {})
        assert store.run_id(key) == 1 and store.results(1) == ({0: {"acc": 1.0}}, [])
        store.add(1, [(1, {"acc": 0.0})], 0.5, MACHINE)
        store.add(1, [(2, {"acc": 1.0})], 0.5, MACHINE)  # the same machine: one row
    finally:
        store.close()
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT doc_index, machine_id FROM docs ORDER BY doc_index").fetchall()
        machines = con.execute("SELECT id, description FROM machines").fetchall()
        applied = [name for (name,) in con.execute("SELECT name FROM migrations ORDER BY id")]
    assert applied == ["_m001_initial", "_m002_writers", "_m003_machines"]
    assert len(machines) == 1 and json.loads(machines[0][1]) == MACHINE
    assert rows == [(0, None), (1, machines[0][0]), (2, machines[0][0])]


# --- hostile stores: refused in one line before anything is written, or (advisory rows) forgotten ---


def make_store(path: Path, *sql: str) -> Path:
    """A store as painters-gguf writes it, then edited by `sql` (committed, the connection closed)."""
    Store(path).close()
    return edit(path, *sql)


def edit(path: Path, *sql: str, params: tuple = ()) -> Path:
    with contextlib.closing(sqlite3.connect(path)) as con:
        for statement in sql:
            con.execute(statement, params if "?" in statement else ())
        con.commit()
    return path


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every name in the folder, with the bytes of the regular files."""
    return {name: (folder / name).read_bytes() if (folder / name).is_file() else None for name in sorted(os.listdir(folder))}


def refused(path: Path) -> str:
    """Store(path)'s one-line error; the folder is left exactly as it was (no -wal, -shm, -journal)."""
    before = snapshot(path.parent)
    with pytest.raises(PaintersError) as info:
        Store(path)
    assert snapshot(path.parent) == before
    assert "\n" not in str(info.value)
    return str(info.value)


def other_program(path: Path, *sql: str, wal: bool = False) -> Path:
    with contextlib.closing(sqlite3.connect(path)) as con:
        if wal:
            con.execute("PRAGMA journal_mode=WAL")
        for statement in sql:
            con.execute(statement)
        con.commit()
    return path


@pytest.mark.parametrize(
    ("sql", "wal", "holding"),
    [
        (["CREATE TABLE notes (x)", "INSERT INTO notes VALUES (1)"], False, "'notes'"),
        (["CREATE TABLE notes (x)", "INSERT INTO notes VALUES (1)"], True, "'notes'"),  # left in WAL mode by its program
        (
            ["CREATE TABLE a (x)", "CREATE VIEW b AS SELECT 1", "CREATE INDEX c ON a (x)", "CREATE TABLE d (y)"],
            False,
            "'a', 'b', 'c', ...",
        ),
        (["CREATE TABLE migrations (id INTEGER PRIMARY KEY, migration TEXT, batch INTEGER)"], False, "'migrations'"),  # Laravel's
        (["CREATE TABLE runs (x)", "CREATE TABLE docs (y)"], False, "'docs', 'runs'"),  # our names, not our store
    ],
)
def test_another_programs_database_is_refused_untouched(tmp_path: Path, sql: list[str], wal: bool, holding: str) -> None:
    db = other_program(tmp_path / "other.db", *sql, wal=wal)
    assert refused(db) == (
        f"results store {db} is not a painters-gguf results store (an SQLite database holding {holding}): give another --db"
    )
    with contextlib.closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == ("wal" if wal else "delete")


@pytest.mark.parametrize(
    "content",
    [
        b"GGUF\x03\x00\x00\x00" + bytes(range(256)) * 8,  # a model
        b'{"question": "q", "answer": "a"}\n' * 50,  # benchmark rows
        b"not a database, just text\n" * 100,
        b"x",  # SQLite takes a file this short for an empty database, and overwrites it
        b"SQLite format 3\x00" + b"\xff" * 200,  # the magic, then garbage
    ],
)
def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "file.db"
    path.write_bytes(content)
    assert refused(path) == f"results store {path}: file is not a database (move it away, or use another --db)"


def test_an_empty_file_becomes_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    Store(path).close()
    with contextlib.closing(sqlite3.connect(path)) as con:
        assert [name for (name,) in con.execute("SELECT name FROM migrations ORDER BY id")] == [m.__name__ for m in MIGRATIONS]


def test_a_path_that_is_not_a_regular_file_is_refused_before_sqlite_opens_it(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    assert refused(fifo) == f"results store {fifo} is not a regular file: give a file (--db)"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    folder = tmp_path / "folder.db"
    folder.mkdir()
    assert refused(folder) == f"results store {folder} is a directory: give a file (--db)"
    assert os.listdir(folder) == []
    link = tmp_path / "link.db"
    link.symlink_to("/dev/null")
    assert refused(link) == f"results store {link} is not a regular file: give a file (--db)"
    for device in ("/dev/null", "/dev/zero"):
        beside = {name for name in os.listdir("/dev") if name.startswith(("null", "zero"))}
        with pytest.raises(PaintersError) as info:
            Store(Path(device))
        assert str(info.value) == f"results store {device} is not a regular file: give a file (--db)"
        assert {name for name in os.listdir("/dev") if name.startswith(("null", "zero"))} == beside  # no /dev/null-journal


NEWEST = len(MIGRATIONS)
UNTYPED = [  # a migrations table whose id column takes any value, holding the three migrations
    "DROP TABLE migrations",
    "CREATE TABLE migrations (id, name TEXT NOT NULL, applied_utc TEXT NOT NULL)",
    "INSERT INTO migrations VALUES (1, 'a', 't'), (2, 'b', 't'), (3, 'c', 't')",
]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (["INSERT INTO migrations VALUES (-1, 'x', 't')"], "is damaged: its migrations table holds -1, not a schema number"),
        (["INSERT INTO migrations VALUES (0, 'x', 't')"], "is damaged: its migrations table holds 0, not a schema number"),
        (
            [f"INSERT INTO migrations VALUES ({2**63 - 1}, 'x', 't')"],
            f"is damaged: its migrations table holds {2**63 - 1}, not a schema number",
        ),
        (
            [*UNTYPED, "INSERT INTO migrations VALUES ('three', 'x', 't')"],
            "is damaged: its migrations table holds 'three', not a schema number",
        ),
        (
            [*UNTYPED, "INSERT INTO migrations VALUES (NULL, 'x', 't')"],
            "is damaged: its migrations table holds NULL, not a schema number",
        ),
        (
            [*UNTYPED, "INSERT INTO migrations VALUES (2.5, 'x', 't')"],
            "is damaged: its migrations table holds 2.5, not a schema number",
        ),
        (
            [*UNTYPED, "INSERT INTO migrations VALUES (1e300, 'x', 't')"],
            "is damaged: its migrations table holds 1e+300, not a schema number",
        ),
        (
            [*UNTYPED, "INSERT INTO migrations VALUES (x'00ff', 'x', 't')"],
            "is damaged: its migrations table holds b'\\x00\\xff', not a schema number",
        ),
        (
            [*UNTYPED, f"INSERT INTO migrations VALUES ('{'9' * 500}', 'x', 't')"],
            f"is damaged: its migrations table holds '{'9' * 36}..., not a schema number",
        ),
        (UNTYPED, "is damaged: table 'migrations' has other columns than painters-gguf gives it"),
        (["DELETE FROM migrations WHERE id = 2"], "is damaged: its migrations table records schema 3 but not 2"),
        (["DELETE FROM migrations WHERE id = 3"], "is damaged: table 'docs' has other columns than painters-gguf gives it"),
        (["DROP TABLE machines"], "is damaged: table 'machines' is missing"),
        (["DROP TABLE writers", "CREATE VIEW writers AS SELECT 1 AS pid"], "is damaged: table 'writers' is missing"),
        (
            ["DROP TABLE writers", "CREATE TABLE writers (pid TEXT, host TEXT, command TEXT, since_utc TEXT)"],
            "is damaged: table 'writers' has other columns than painters-gguf gives it",
        ),
        (["ALTER TABLE docs ADD COLUMN extra TEXT"], "is damaged: table 'docs' has other columns than painters-gguf gives it"),
        (
            ["CREATE TRIGGER gone AFTER INSERT ON docs BEGIN DELETE FROM docs; END"],
            "is damaged: it holds trigger 'gone', which painters-gguf never makes",
        ),
    ],
)
def test_a_damaged_schema_record_is_refused_untouched(tmp_path: Path, sql: list[str], message: str) -> None:
    db = make_store(tmp_path / "r.db", *sql)
    assert refused(db) == f"results store {db} {message}; move it away, or use another --db"


def test_a_table_made_before_its_migration_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    with contextlib.closing(sqlite3.connect(db)) as con:  # schema 2, with a machines table of its own
        con.execute(store_module.MIGRATIONS_TABLE)
        for number, migration in enumerate(MIGRATIONS[:2], 1):
            migration(con)
            con.execute("INSERT INTO migrations VALUES (?, ?, 't')", (number, migration.__name__))
        con.execute("CREATE TABLE machines (id INTEGER PRIMARY KEY, description TEXT NOT NULL UNIQUE)")
        con.commit()
    assert refused(db) == (
        f"results store {db} is damaged: table 'machines' is there, though its migration is not recorded; "
        "move it away, or use another --db"
    )


@pytest.mark.parametrize("number", [NEWEST + 1, 9999])
def test_a_newer_store_is_refused_untouched(tmp_path: Path, number: int) -> None:
    db = make_store(tmp_path / "r.db", f"INSERT INTO migrations VALUES ({number}, 'future', '2030')")
    assert refused(db) == (
        f"results store {db} was written by a newer painters-gguf (schema {number}, this one knows {NEWEST}): "
        "upgrade, or use another --db"
    )


WRITERS = "INSERT INTO writers VALUES (?, ?, ?, ?)"
NOW = "2026-01-01T00:00:00+00:00"


def malformed_writers(host: str) -> list[tuple[object, ...]]:
    """Rows no painters-gguf writes: a pid that is text, negative, 0, past pid_t, a fraction, bytes;
    a host, command or time of the wrong type, unprintable or too long."""
    return [
        ("abc", host, "c", NOW),
        (-1, host, "c", NOW),  # os.kill(-1, 0) would answer for every process
        (0, host, "c", NOW),
        (2**31, host, "c", NOW),
        (2**40, "elsewhere", "c", NOW),
        (1.5, host, "c", NOW),
        (b"\x01", host, "c", NOW),
        (7, b"bytes", "c", NOW),
        (7, "bad\nhost", "c", NOW),
        (7, "h" * 300, "c", NOW),
        (7, host, b"command", NOW),  # a number would be stored as text
        (8, host, "x" * 301, NOW),
        (9, host, "c", "yesterday"),
        (10, host, "c", "2026-13-45"),
        (11, host, "c", b"\x00"),
    ]


def test_malformed_writer_rows_are_forgotten(tmp_path: Path) -> None:
    host = socket.gethostname()
    db = make_store(tmp_path / "r.db")
    kept = [(os.getppid(), host, "a live process here", NOW), (12345, "elsewhere", "painters-gguf eval", NOW)]
    for row in [*malformed_writers(host), *kept, (2**31 - 1, host, "a dead process here", NOW)]:
        edit(db, WRITERS, params=row)
    store = Store(db)
    try:
        with contextlib.closing(sqlite3.connect(db)) as con:
            rows = con.execute("SELECT pid, host, command, since_utc FROM writers").fetchall()
        assert sorted(rows, key=str) == sorted([*kept, (os.getpid(), host, ANY, ANY)], key=str)
    finally:
        store.close()


def test_a_lock_message_names_only_well_formed_writers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = socket.gethostname()
    db = make_store(tmp_path / "r.db")
    for row in [*malformed_writers(host), (12345, "elsewhere", "painters-gguf eval", NOW)]:
        edit(db, WRITERS, params=row)
    for n in range(5):
        edit(db, WRITERS, params=(100 + n, "farther", f"run {n}", NOW))
    monkeypatch.setenv("PAINTERS_GGUF_LOCK_TIMEOUT", "0.2")
    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as holder:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(PaintersError) as info:
            Store(db)
        holder.execute("ROLLBACK")
    assert str(info.value) == (
        f"results store {db} stayed locked for 0.2 s by another process (pid 12345 on elsewhere: 'painters-gguf eval' "
        f"since {NOW}; pid 100 on farther: 'run 0' since {NOW}; pid 101 on farther: 'run 1' since {NOW}; 3 more); "
        "wait for it to finish, or use another --db"
    )


KEY = RunKey("sha", "m.gguf", "0-3", "arc_easy", "1", {})


def test_document_and_settings_rows_of_the_wrong_type_are_left_out(tmp_path: Path) -> None:
    db = make_store(tmp_path / "r.db")
    store = Store(db)
    try:
        run = store.run_id(KEY)
        store.add(run, [(0, {"acc": 1.0}), (1, {"acc": 0.0})], 0.5, MACHINE)
        for index in ("seven", 2.5, b"\x02", -3):
            edit(db, "INSERT INTO docs VALUES (?, ?, '{\"acc\": 1.0}', 't', NULL)", params=(run, index))
        edit(db, "UPDATE docs SET result = ? WHERE doc_index = 1", params=(b"\xff\xfe",))
        for n, settings in enumerate(("[" * 100_000 + "]" * 100_000, b"\xff", '{"n_ctx": 8}')):
            other = store.run_id(RunKey("sha", "m.gguf", "0-3", "arc_easy", "1", {"n": n}))
            store.add(other, [(0, {"acc": 1.0})], 0.5, MACHINE)  # a run that holds documents
            edit(db, "UPDATE runs SET settings = ? WHERE id = ?", params=(settings, other))
        assert store.doc_indices(run) == {0, 1, -3}
        assert store.results(run) == ({0: {"acc": 1.0}, -3: {"acc": 1.0}}, [1])
        assert store.settings_with_results("sha", "0-3", "arc_easy") == [{}, {"n_ctx": 8}]
    finally:
        store.close()


def test_a_run_id_that_is_not_an_integer_is_refused(tmp_path: Path) -> None:
    db = make_store(tmp_path / "r.db")
    with contextlib.closing(sqlite3.connect(db)) as con:
        (sql,) = con.execute("SELECT sql FROM sqlite_master WHERE name = 'runs'").fetchone()
    # INTEGER PRIMARY KEY DESC is not the rowid: its column takes text, with the same columns listed
    edit(
        db,
        "PRAGMA legacy_alter_table = ON",
        "ALTER TABLE runs RENAME TO old_runs",
        sql.replace("id INTEGER PRIMARY KEY,", "id INTEGER PRIMARY KEY DESC,"),
        "DROP TABLE old_runs",
        "INSERT INTO runs VALUES ('zz', 'sha', 'm.gguf', '0-3', 'arc_easy', '1', '{}', 't', 't', 0)",
    )
    store = Store(db)
    try:
        for read in (store.find_run, store.run_id):
            with pytest.raises(PaintersError) as info:
                read(KEY)
            assert str(info.value) == (
                f"results store {db} is damaged: a run's id is 'zz', not an integer; move it away, or use another --db"
            )
    finally:
        store.close()
