"""psycopg 3, psycopg2 and SQLAlchemy against a running deltagate.

Connection settings come from PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE. Every check asserts
on values; any failure raises and the process exits non-zero.
"""
import asyncio
import datetime
import decimal
import os

import asyncpg
import psycopg
import psycopg2
import psycopg2.extras
import sqlalchemy
from sqlalchemy import inspect, text

DSN = "host={PGHOST} port={PGPORT} user={PGUSER} password={PGPASSWORD} dbname={PGDATABASE}".format(**os.environ)


def psycopg3():
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE py3 (id serial PRIMARY KEY, name varchar(20) NOT NULL, v float8, "
            "n numeric(10,2), ts timestamp, d date, b boolean, raw bytea)"
        )
        # Server-side binding: str goes as OID 0 (unknown) and the server infers the type.
        cur = conn.execute(
            "INSERT INTO py3 (name, v, n, ts, d, b, raw) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            ("alpha", 1.25, decimal.Decimal("3.50"), datetime.datetime(2024, 5, 6, 7, 8, 9, 123000),
             datetime.date(2024, 5, 6), True, b"\x00\x01"),
        )
        assert cur.fetchone() == (1,)
        cur.executemany("INSERT INTO py3 (name, v) VALUES (%s, %s)", [("beta", 2.0), ("gamma", None)])
        rows = conn.execute("SELECT id, name, v, n, ts, d, b, raw FROM py3 ORDER BY id").fetchall()
        assert rows[0] == (1, "alpha", 1.25, decimal.Decimal("3.50"),
                           datetime.datetime(2024, 5, 6, 7, 8, 9, 123000), datetime.date(2024, 5, 6),
                           True, b"\x00\x01"), rows[0]
        assert [r[1] for r in rows] == ["alpha", "beta", "gamma"]
        # Binary results.
        with conn.cursor(binary=True) as bcur:
            bcur.execute("SELECT name, v, n FROM py3 WHERE id = %s", (1,))
            assert bcur.fetchone() == ("alpha", 1.25, decimal.Decimal("3.50"))
        # Errors carry SQLSTATEs and leave the connection usable.
        try:
            conn.execute("INSERT INTO py3 (id, name) VALUES (1, 'dup')")
            raise AssertionError("duplicate key accepted")
        except psycopg.errors.UniqueViolation as e:
            assert e.sqlstate == "23505"
        try:
            conn.execute("SELECT * FROM nosuch")
            raise AssertionError("missing table accepted")
        except psycopg.errors.UndefinedTable as e:
            assert e.sqlstate == "42P01"
        # Floats and integers bound to a numeric(10,2) column round as PostgreSQL 15 rounds
        # them (half away from zero, after the float's 15 significant digits), one at a time
        # and in a batch; too many digits is 22003.
        conn.execute("CREATE TABLE py3_numeric (id int PRIMARY KEY, m numeric(10,2))")
        conn.execute("INSERT INTO py3_numeric VALUES (%s, %s)", (1, 1.2345))
        conn.cursor().executemany("INSERT INTO py3_numeric VALUES (%s, %s)", [(2, 2.675), (3, -7), (4, -0.005)])
        got = conn.execute("SELECT id, m FROM py3_numeric ORDER BY id").fetchall()
        assert got == [(1, decimal.Decimal("1.23")), (2, decimal.Decimal("2.68")),
                       (3, decimal.Decimal("-7.00")), (4, decimal.Decimal("-0.01"))], got
        try:
            conn.execute("INSERT INTO py3_numeric VALUES (%s, %s)", (5, 123456789.0))
            raise AssertionError("numeric overflow accepted")
        except psycopg.errors.NumericValueOutOfRange as e:
            assert e.sqlstate == "22003"
        # psycopg's type introspection treats 42704 as "not found".
        assert psycopg.types.TypeInfo.fetch(conn, "hstore") is None
    # Transactions (psycopg's default: BEGIN before the first statement).
    with psycopg.connect(DSN) as conn:
        conn.execute("INSERT INTO py3 (name) VALUES ('rolled back')")
        conn.rollback()
        conn.execute("INSERT INTO py3 (name) VALUES ('kept')")
        conn.commit()
        names = [r[0] for r in conn.execute("SELECT name FROM py3 ORDER BY id").fetchall()]
        assert names == ["alpha", "beta", "gamma", "kept"], names


def psycopg_two():
    conn = psycopg2.connect(DSN)
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM py3 WHERE name LIKE %s", ("%a%",))
    assert cur.fetchone()[0] == 3
    cur.execute("SHOW DateStyle")
    assert cur.fetchone()[0].startswith("ISO")
    psycopg2.extras.execute_values(cur, "INSERT INTO py3 (name, v) VALUES %s", [("p2a", 1.0), ("p2b", 2.0)])
    conn.commit()
    cur.execute("SELECT name FROM py3 WHERE name LIKE 'p2%%' ORDER BY name")
    assert [r[0] for r in cur.fetchall()] == ["p2a", "p2b"]
    try:
        cur.execute("INSERT INTO py3 (name) VALUES (NULL)")
        raise AssertionError("NULL accepted")
    except psycopg2.errors.NotNullViolation as e:
        assert e.pgcode == "23502"
        conn.rollback()
    conn.close()


def sqlalchemy_reflection():
    for driver in ("psycopg2", "psycopg"):
        url = "postgresql+{d}://{PGUSER}:{PGPASSWORD}@{PGHOST}:{PGPORT}/{PGDATABASE}".format(d=driver, **os.environ)
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM py3")).scalar() == 6
        insp = inspect(engine)
        assert insp.has_table("py3"), driver
        assert not insp.has_table("nosuch"), driver
        assert "py3" in insp.get_table_names(), driver
        columns = {c["name"]: c for c in insp.get_columns("py3")}
        assert list(columns) == ["id", "name", "v", "n", "ts", "d", "b", "raw"], list(columns)
        assert isinstance(columns["name"]["type"], sqlalchemy.types.VARCHAR)
        assert columns["name"]["type"].length == 20
        assert columns["name"]["nullable"] is False
        assert columns["v"]["nullable"] is True
        assert "nextval" in (columns["id"]["default"] or ""), columns["id"]
        assert isinstance(columns["n"]["type"], sqlalchemy.types.NUMERIC)
        assert (columns["n"]["type"].precision, columns["n"]["type"].scale) == (10, 2)
        assert isinstance(columns["ts"]["type"], sqlalchemy.types.TIMESTAMP)
        pk = insp.get_pk_constraint("py3")
        assert pk["constrained_columns"] == ["id"], pk
        engine.dispose()


def copy_clients():
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("CREATE TABLE pycopy (tagid int4, t_stamp int8, v float8, s varchar(50), ts timestamp, "
                     "PRIMARY KEY (tagid, t_stamp))")
        with conn.cursor() as cur:
            with cur.copy("COPY pycopy (tagid, t_stamp, v, s, ts) FROM STDIN") as copy:
                for i in range(500):
                    copy.write_row((i % 5, 1000 + i, i / 2, "row\t%d" % i, datetime.datetime(2026, 11, 1, 0, 0, i % 60)))
            assert cur.rowcount == 500, cur.rowcount
        # A bad row aborts the whole COPY.
        try:
            with conn.cursor() as cur:
                with cur.copy("COPY pycopy (tagid, t_stamp) FROM STDIN") as copy:
                    copy.write_row((1, 5000))
                    copy.write_row((1, 5000))
            raise AssertionError("duplicate key accepted")
        except psycopg.errors.UniqueViolation:
            pass
        row = conn.execute("SELECT count(*), sum(t_stamp), max(s) FROM pycopy").fetchone()
        assert row == (500, sum(1000 + i for i in range(500)), "row\t99"), row
        with conn.cursor() as cur:
            with cur.copy("COPY (SELECT tagid, s FROM pycopy WHERE t_stamp < 1003 ORDER BY t_stamp) TO STDOUT") as copy:
                rows = list(copy.rows())
        assert rows == [("0", "row\t0"), ("1", "row\t1"), ("2", "row\t2")], rows

    async def with_asyncpg():
        conn = await asyncpg.connect(host=os.environ["PGHOST"], port=os.environ["PGPORT"], user=os.environ["PGUSER"],
                                     password=os.environ["PGPASSWORD"], database=os.environ["PGDATABASE"])
        try:
            records = [(7, 9000 + i, i * 1.5, "a%d" % i, datetime.datetime(2026, 11, 2, 1, 2, 3, i)) for i in range(300)]
            result = await conn.copy_records_to_table("pycopy", records=records,
                                                      columns=["tagid", "t_stamp", "v", "s", "ts"])
            assert result == "COPY 300", result
            row = await conn.fetchrow("SELECT count(*), max(v) FROM pycopy WHERE tagid = 7")
            assert (row[0], row[1]) == (300, 299 * 1.5), row
            row = await conn.fetchrow("SELECT ts FROM pycopy WHERE tagid = 7 AND t_stamp = 9005")
            assert row[0] == datetime.datetime(2026, 11, 2, 1, 2, 3, 5), row
        finally:
            await conn.close()

    asyncio.run(with_asyncpg())


if __name__ == "__main__":
    psycopg3()
    copy_clients()
    psycopg_two()
    sqlalchemy_reflection()
    print("python clients: ok")
