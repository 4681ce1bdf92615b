"""Independent readers of the Delta tables deltagate wrote: DuckDB's delta extension
(delta-kernel-rs + DuckDB's Parquet reader) and polars-deltalake, plus a direct check of the
Delta log and Parquet files against what Spark 3.4+/Databricks require.

Usage: delta_readers.py check <table path>      (table written by tests/it/delta.rs)
       delta_readers.py write-external <path>   (a table written by another engine)
       delta_readers.py months <table path>     (a historian table: per month, rows and sum of tagid)
"""
import datetime
import decimal
import glob
import json
import os
import sys

import duckdb
import duckdb_extension_delta
import polars_deltalake
import pyarrow as pa
import pyarrow.parquet as pq

EXPECTED = [
    # id, i2, i4, i8, f4, f8, n, b, t, vc, c, d, ts, tz, by, j, u
    (1, -7, 123456, 9000000000, 1.5, -2.25, decimal.Decimal("1234.567"), True, "héllo", "abc", "xy  ",
     datetime.date(2024, 2, 29), datetime.datetime(2024, 2, 29, 13, 14, 15, 123456),
     datetime.datetime(2024, 2, 29, 13, 14, 15, tzinfo=datetime.timezone.utc), b"\x00\xff", '{"a": 1}',
     "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    (2, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None, None),
]
COLUMNS = ["id", "i2", "i4", "i8", "f4", "f8", "n", "b", "t", "vc", "c", "d", "ts", "tz", "by", "j", "u"]


def normalize(row):
    out = []
    for value in row:
        if isinstance(value, datetime.datetime) and value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc)
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = bytes(value)
        out.append(value)
    return tuple(out)


def expected_rows(naive_ts):
    rows = []
    for row in EXPECTED:
        row = list(row)
        # A `timestamp` column is stored as UTC microseconds; readers show it as UTC.
        if row[12] is not None and not naive_ts:
            row[12] = row[12].replace(tzinfo=datetime.timezone.utc)
        rows.append(tuple(row))
    return rows


def duckdb_rows(path):
    con = duckdb.connect()
    ext = os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions/v1.5.5/delta.duckdb_extension")
    con.execute(f"LOAD '{ext}'")
    con.execute("SET TimeZone = 'UTC'")
    rows = con.execute(f"SELECT {', '.join(chr(34) + c + chr(34) for c in COLUMNS)} FROM delta_scan('{path}') ORDER BY id").fetchall()
    return [normalize(r) for r in rows]


def polars_rows(path):
    df = polars_deltalake.scan_delta(path).collect().sort("id")
    return [normalize(r) for r in df.select(COLUMNS).rows()]


def check_log(path):
    log = os.path.join(path, "_delta_log")
    commits = sorted(glob.glob(os.path.join(log, "*.json")))
    assert len(commits) >= 11, f"expected at least 11 commits, got {len(commits)}"
    protocol = None
    metadata = None
    stats_seen = 0
    for commit in commits:
        for line in open(commit):
            action = json.loads(line)
            if "protocol" in action:
                protocol = action["protocol"]
            if "metaData" in action:
                metadata = action["metaData"]
            if "add" in action and action["add"].get("stats"):
                stats = json.loads(action["add"]["stats"])
                assert "numRecords" in stats and "minValues" in stats, stats
                stats_seen += 1
            if "commitInfo" in action:
                assert action["commitInfo"].get("engine", "").startswith("deltagate/"), action["commitInfo"]
    # Readable by Spark 3.4+/Databricks: legacy protocol, no table features, no timestampNtz.
    assert protocol == {"minReaderVersion": 1, "minWriterVersion": 2}, protocol
    schema = json.loads(metadata["schemaString"])
    kinds = {f["name"]: f["type"] for f in schema["fields"]}
    assert kinds["ts"] == "timestamp" and kinds["tz"] == "timestamp", kinds
    assert kinds["n"] == "decimal(10,3)" and kinds["i2"] == "short" and kinds["by"] == "binary", kinds
    assert metadata["configuration"]["delta.checkpointInterval"] == "10", metadata["configuration"]
    assert stats_seen > 0, "no file statistics"
    checkpoints = glob.glob(os.path.join(log, "*.checkpoint.parquet"))
    assert checkpoints, "no checkpoint after 10 commits"
    assert os.path.exists(os.path.join(log, "_last_checkpoint"))
    # Data files: timestamps as INT64 microseconds adjusted to UTC.
    files = glob.glob(os.path.join(path, "*.parquet"))
    assert files
    for f in files:
        schema = pq.read_schema(f)
        for name in ("ts", "tz"):
            t = schema.field(name).type
            assert pa.types.is_timestamp(t) and t.unit == "us" and t.tz in ("UTC", "+00:00"), (f, name, t)


def check(path):
    check_log(path)
    got = duckdb_rows(path)
    assert got == expected_rows(naive_ts=False), f"duckdb:\n{got}\n!=\n{expected_rows(False)}"
    got = polars_rows(path)
    assert got == expected_rows(naive_ts=False), f"polars:\n{got}\n!=\n{expected_rows(False)}"
    print("delta readers: ok")


def write_external(path):
    import deltalake
    table = pa.table({
        "sensor": pa.array(["a", "b", "c"], pa.string()),
        "reading": pa.array([1.5, 2.5, None], pa.float64()),
        "at": pa.array([datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)] * 3, pa.timestamp("us", tz="UTC")),
        "n": pa.array([1, 2, 3], pa.int64()),
    })
    deltalake.write_deltalake(path, table)
    print("external table written")


def months(path):
    """Prints `month rows sum(tagid) sum(t_stamp)` per partition, as both readers see them; fails if they differ."""
    con = duckdb.connect()
    ext = os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions/v1.5.5/delta.duckdb_extension")
    con.execute(f"LOAD '{ext}'")
    by_duckdb = con.execute(
        f"SELECT month, count(*), sum(tagid), sum(t_stamp) FROM delta_scan('{path}') GROUP BY month ORDER BY month"
    ).fetchall()
    import polars as pl
    by_polars = (
        polars_deltalake.scan_delta(path)
        .group_by("month")
        .agg(pl.len(), pl.col("tagid").sum(), pl.col("t_stamp").sum())
        .sort("month")
        .collect()
        .rows()
    )
    by_duckdb = [tuple(int(v) if i else v for i, v in enumerate(r)) for r in by_duckdb]
    by_polars = [tuple(int(v) if i else v for i, v in enumerate(r)) for r in by_polars]
    assert by_duckdb == by_polars, f"duckdb {by_duckdb} != polars {by_polars}"
    for row in by_duckdb:
        print("month", *row)
    print("months: ok")


if __name__ == "__main__":
    {"check": check, "write-external": write_external, "months": months}[sys.argv[1]](sys.argv[2])
