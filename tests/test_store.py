"""The results store's schema moves forward in place: a store written before machines were
recorded keeps its documents, which stay unattributed, and records the machine of new ones."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from painters_gguf import store as store_module
from painters_gguf.store import RunKey, Store

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
