"""The result store: one SQLite database per sweep, WAL mode, one writer (the client).

Schema (``PRAGMA application_id`` = :data:`APPLICATION_ID`, ``PRAGMA user_version`` =
:data:`SCHEMA_VERSION`)::

    points(key TEXT PRIMARY KEY,   -- sha256 of the point, the measure's options, the project
                                   -- version and the content hashes of its input files
           measure TEXT, point TEXT,          -- the point as JSON
           status TEXT,                       -- 'ok' or 'failed'
           result TEXT, error TEXT,           -- figures as JSON; the error's one line
           seconds REAL, worker TEXT, version TEXT, finished REAL)   -- unix time

A file that is not SQLite, or a SQLite database of something else, is refused with
:class:`StoreError` and left as it was.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from contract.errors import AsdError

APPLICATION_ID = 0x41534453  # 'ASDS'
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    key TEXT PRIMARY KEY, measure TEXT NOT NULL, point TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    result TEXT, error TEXT, seconds REAL, worker TEXT, version TEXT, finished REAL)
"""


class StoreError(OSError, AsdError):
    """A database file this version cannot use (corrupt, foreign, or newer)."""


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            app = self.db.execute("PRAGMA application_id").fetchone()[0]
            ver = self.db.execute("PRAGMA user_version").fetchone()[0]
            tables = self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a sweep database ({exc})") from None
        if not fresh and (app != APPLICATION_ID or not tables):
            self.db.close()
            raise StoreError(f"{self.path}: not a sweep database (another program's file; "
                             f"give a new --db path)")
        if ver > SCHEMA_VERSION:
            self.db.close()
            raise StoreError(f"{self.path}: schema version {ver} is newer than this asd "
                             f"({SCHEMA_VERSION})")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        if fresh or not tables:
            self.db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.db.execute(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status(self) -> dict[str, str]:
        """key -> 'ok' or 'failed' for every recorded point."""
        return dict(self.db.execute("SELECT key, status FROM points").fetchall())

    def put(self, key: str, point: dict[str, Any], rec: dict[str, Any], version: str) -> None:
        """Record one finished point (replacing an earlier failure of the same key)."""
        self.db.execute(
            "INSERT OR REPLACE INTO points VALUES (?,?,?,?,?,?,?,?,?,?)",
            (key, point["measure"], json.dumps(point, sort_keys=True), rec["status"],
             json.dumps(rec.get("result")) if rec.get("result") is not None else None,
             rec.get("error"), rec.get("seconds"), rec.get("worker"), version, time.time()))

    def rows(self, keys: list[str] | None = None) -> list[dict[str, Any]]:
        """Every recorded point (or those of ``keys``, in that order) as dictionaries."""
        cur = self.db.execute("SELECT key, measure, point, status, result, error, seconds, "
                              "worker, version, finished FROM points ORDER BY finished")
        cols = [d[0] for d in cur.description]
        out = {}
        for r in cur.fetchall():
            d = dict(zip(cols, r, strict=True))
            d["point"] = json.loads(d["point"])
            d["result"] = json.loads(d["result"]) if d["result"] else None
            out[d["key"]] = d
        return list(out.values()) if keys is None else [out[k] for k in keys if k in out]
