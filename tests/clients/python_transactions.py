"""psycopg 3 against a running deltagate: PostgreSQL's transaction state machine over the
extended protocol, with savepoints and pipeline mode.

Connection settings come from PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE. Every check asserts
on values; any failure raises and the process exits non-zero. The same checks pass against
PostgreSQL 15.
"""
import os

import psycopg
from psycopg.pq import TransactionStatus as TS

DSN = "host={PGHOST} port={PGPORT} user={PGUSER} password={PGPASSWORD} dbname={PGDATABASE}".format(**os.environ)


def expect_error(conn, sql, params, sqlstate):
    try:
        conn.execute(sql, params)
    except psycopg.Error as e:
        assert e.sqlstate == sqlstate, (sql, e.sqlstate, e)
        return
    raise AssertionError(f"{sql} succeeded, expected {sqlstate}")


def ids(conn, table):
    return [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY id").fetchall()]


def transactions_psycopg():
    """PostgreSQL's transaction state machine over the extended protocol (psycopg 3 always
    sends Parse/Bind/Execute): an error fails the block until it ends, savepoints repair it,
    and a pipeline outside a block is one transaction up to its Sync."""
    with psycopg.connect(DSN, autocommit=True) as setup:
        setup.execute("CREATE TABLE txp (id int PRIMARY KEY, n int)")
        setup.execute("INSERT INTO txp VALUES (1, 1), (100, 0)")
    with psycopg.connect(DSN) as conn:
        # An error inside a block: every statement after it gets 25P02, COMMIT rolls back.
        conn.execute("INSERT INTO txp VALUES (%s, 1)", (2,))
        # The error arises while rows are computed (a column is 0), not while planning.
        expect_error(conn, "SELECT 1 / n FROM txp WHERE id = %s", (100,), "22012")
        assert conn.info.transaction_status == TS.INERROR
        expect_error(conn, "INSERT INTO txp VALUES (%s, 1)", (3,), "25P02")
        expect_error(conn, "SELECT %s::int", (1,), "25P02")
        conn.commit()  # answered ROLLBACK
        assert conn.info.transaction_status == TS.IDLE
        assert ids(conn, "txp") == [1, 100], ids(conn, "txp")
        conn.commit()
        # A planning error and a syntax error fail the block too.
        conn.execute("INSERT INTO txp VALUES (%s, 1)", (4,))
        expect_error(conn, "SELECT nosuch FROM txp WHERE id = %s", (1,), "42703")
        expect_error(conn, "INSERT INTO txp VALUES (%s, 1)", (5,), "25P02")
        conn.rollback()
        conn.execute("INSERT INTO txp VALUES (%s, 1)", (4,))
        expect_error(conn, "SELEC %s", (1,), "42601")
        expect_error(conn, "INSERT INTO txp VALUES (%s, 1)", (5,), "25P02")
        conn.commit()
        assert ids(conn, "txp") == [1, 100]
        conn.commit()
        # Savepoints: ROLLBACK TO repairs the block and drops what followed the savepoint.
        conn.execute("INSERT INTO txp VALUES (%s, 1)", (6,))
        conn.execute("SAVEPOINT a")
        conn.execute("INSERT INTO txp VALUES (%s, 1)", (7,))
        expect_error(conn, "INSERT INTO txp VALUES (%s, 1)", (6,), "23505")
        expect_error(conn, "INSERT INTO txp VALUES (%s, 1)", (8,), "25P02")
        expect_error(conn, "RELEASE SAVEPOINT a", None, "25P02")
        conn.execute("ROLLBACK TO SAVEPOINT a")
        assert conn.info.transaction_status == TS.INTRANS
        conn.execute("INSERT INTO txp VALUES (%s, 1)", (9,))
        expect_error(conn, "ROLLBACK TO SAVEPOINT nosuch", None, "3B001")
        conn.execute("ROLLBACK TO SAVEPOINT a")
        conn.execute("INSERT INTO txp VALUES (%s, 1)", (10,))
        conn.commit()
        assert ids(conn, "txp") == [1, 6, 10, 100], ids(conn, "txp")
        conn.commit()
        # psycopg's nested transaction blocks are savepoints.
        with conn.transaction():
            conn.execute("INSERT INTO txp VALUES (%s, 1)", (11,))
            try:
                with conn.transaction():
                    conn.execute("INSERT INTO txp VALUES (%s, 1)", (12,))
                    conn.execute("INSERT INTO txp VALUES (%s, 1)", (11,))
            except psycopg.errors.UniqueViolation:
                pass
            conn.execute("INSERT INTO txp VALUES (%s, 1)", (13,))
        assert ids(conn, "txp") == [1, 6, 10, 11, 13, 100], ids(conn, "txp")
        conn.commit()
    with psycopg.connect(DSN, autocommit=True) as conn:
        # A pipeline outside a block is one implicit transaction up to its Sync: an error
        # rolls back what ran before it in the pipeline, and skips what follows.
        try:
            with conn.pipeline():
                conn.execute("INSERT INTO txp VALUES (%s, 1)", (20,))
                conn.execute("UPDATE txp SET n = n + 1 WHERE id = %s", (1,))
                conn.execute("SELECT 1 / n FROM txp WHERE id = %s", (100,))
                conn.execute("INSERT INTO txp VALUES (%s, 1)", (21,))
            raise AssertionError("the pipeline succeeded")
        except psycopg.errors.DivisionByZero:
            pass
        assert ids(conn, "txp") == [1, 6, 10, 11, 13, 100], ids(conn, "txp")
        assert conn.execute("SELECT n FROM txp WHERE id = 1").fetchone() == (1,)
        # Two Syncs, two transactions: the first commits, the second rolls back.
        try:
            with conn.pipeline() as p:
                conn.execute("INSERT INTO txp VALUES (%s, 1)", (22,))
                conn.execute("INSERT INTO txp VALUES (%s, 1)", (23,))
                p.sync()
                conn.execute("INSERT INTO txp VALUES (%s, 1)", (24,))
                conn.execute("INSERT INTO txp VALUES (%s, 1)", (22,))
            raise AssertionError("the pipeline succeeded")
        except psycopg.errors.UniqueViolation:
            pass
        assert ids(conn, "txp") == [1, 6, 10, 11, 13, 22, 23, 100], ids(conn, "txp")
        # A successful pipeline commits everything, and reads its own writes.
        with conn.pipeline():
            conn.execute("INSERT INTO txp VALUES (%s, 1)", (30,))
            conn.execute("UPDATE txp SET n = 5 WHERE id = %s", (30,))
            cur = conn.execute("SELECT n FROM txp WHERE id = %s", (30,))
        assert cur.fetchone() == (5,)
        assert conn.info.transaction_status == TS.IDLE
        assert conn.execute("SELECT n FROM txp WHERE id = 30").fetchone() == (5,)
    with psycopg.connect(DSN) as conn:
        # A pipeline inside a block: the error fails the block.
        try:
            with conn.pipeline():
                conn.execute("INSERT INTO txp VALUES (%s, 1)", (40,))
                conn.execute("SELECT 1 / n FROM txp WHERE id = %s", (100,))
        except psycopg.errors.DivisionByZero:
            pass
        assert conn.info.transaction_status == TS.INERROR
        expect_error(conn, "SELECT %s::int", (1,), "25P02")
        conn.rollback()
        assert 40 not in ids(conn, "txp")


if __name__ == "__main__":
    transactions_psycopg()
    print("transactions: ok")
