"""Queries' results as Arrow IPC streams on standard output, one after the other, read by
the ADBC SQLite driver on one connection (the driver keeps a transaction open, so they
read one snapshot). Run as a script by ``graph.embedded`` (``EmbeddedStore.tables``):

    python graph/arrow_child.py DATABASE BATCH_ROWS SQL [SQL ...]

It runs in a process of its own because the driver carries its own copy of SQLite. Two
copies in one process do not see each other's POSIX locks: the driver's copy, closing
its connection, took the store's WAL for unused, checkpointed and removed it under the
store's open connection, whose next write failed with "disk I/O error". Between
processes SQLite's locking works as designed. Exit status 3: the driver or pyarrow is
not installed; 2: the query failed (the message is on standard error).
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print("usage: arrow_child.py DATABASE BATCH_ROWS SQL [SQL ...]", file=sys.stderr)
        return 2
    database, batch_rows, queries = argv[1], argv[2], argv[3:]
    try:
        import adbc_driver_sqlite.dbapi as adbc
        import pyarrow as pa
    except ImportError as exc:
        print(f"ImportError: {exc}", file=sys.stderr)
        return 3
    try:
        with adbc.connect(database) as conn, conn.cursor() as cur:
            cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": batch_rows})
            for sql in queries:
                cur.execute(sql)
                table = cur.fetch_arrow_table()
                with pa.ipc.new_stream(sys.stdout.buffer, table.schema) as out:
                    out.write_table(table)
    except Exception as exc:  # every driver error is reported the same way
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
