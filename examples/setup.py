#!/usr/bin/env python3
"""Creates the example databases (helpdesk.db, crm.db, shop.db) from their seed.sql.

Re-running recreates them from scratch, so an example always starts from the
same data. Uses only Python's standard library.
"""
import pathlib
import sqlite3
import sys

HERE = pathlib.Path(__file__).resolve().parent
DATABASES = {
    HERE / "support-triage" / "helpdesk.db": HERE / "support-triage" / "seed.sql",
    HERE / "lead-qualification" / "crm.db": HERE / "lead-qualification" / "seed.sql",
    HERE / "order-status" / "shop.db": HERE / "order-status" / "seed.sql",
}

for db, seed in DATABASES.items():
    for suffix in ("", "-wal", "-shm"):
        pathlib.Path(str(db) + suffix).unlink(missing_ok=True)
    with sqlite3.connect(db) as conn:
        conn.executescript(seed.read_text())
    print(f"created {db.relative_to(HERE.parent)}", file=sys.stderr)
