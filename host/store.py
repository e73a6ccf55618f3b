"""The host's execution store: drop copy reports in SQLite, one row per ExecID, in arrival
order. Positions after a restart are rebuilt by replaying `ExecutionStore.reports`."""

import dataclasses
import sqlite3
import threading
from pathlib import Path

from .dropcopy import ExecutionReport

__all__ = ["ExecutionStore"]

_FIELDS = [f.name for f in dataclasses.fields(ExecutionReport)]
_BOOLEAN = {"poss_dup", "poss_resend"}


class ExecutionStore:
    """`path` is an SQLite file (created with its table if new) or ``":memory:"``. Safe to
    use from QuickFIX's thread and the caller's: one connection behind a lock."""

    def __init__(self, path):
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._lock = threading.Lock()
        columns = ", ".join(f"{name} {'TEXT' if _is_text(name) else 'INTEGER'} NOT NULL"
                            for name in _FIELDS)
        with self._lock, self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS executions (row INTEGER PRIMARY KEY "
                             f"AUTOINCREMENT, {columns}, UNIQUE (exec_id))")

    def add(self, report):
        """Commit `report` unless its ExecID is already stored; True if it was new."""
        values = [getattr(report, name) for name in _FIELDS]
        with self._lock, self._db:
            cursor = self._db.execute(
                f"INSERT OR IGNORE INTO executions ({', '.join(_FIELDS)}) "
                f"VALUES ({', '.join('?' * len(_FIELDS))})", values)
            return cursor.rowcount == 1

    def reports(self, after=0):
        """[(row, report)] with row > `after`, in the order they were first received."""
        with self._lock:
            rows = self._db.execute(f"SELECT row, {', '.join(_FIELDS)} FROM executions "
                                    "WHERE row > ? ORDER BY row", (after,)).fetchall()
        return [(row[0], _report(row[1:])) for row in rows]

    def __len__(self):
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM executions").fetchone()[0]

    def close(self):
        self._db.close()


def _is_text(name):
    kind = {f.name: f.type for f in dataclasses.fields(ExecutionReport)}[name]
    return kind in (str, "str")


def _report(values):
    kwargs = dict(zip(_FIELDS, values, strict=True))
    for name in _BOOLEAN:
        kwargs[name] = bool(kwargs[name])
    return ExecutionReport(**kwargs)
