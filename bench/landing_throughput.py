"""Landing files -> bronze against pyarrow writing the same rows to Parquet (goal ratio >= 0.7).

Puts ``--files`` CSV files of ``--rows`` rows each (the marketing_spend source's
declared columns, about 1% bad rows) in a moto S3 bucket, then runs ``--repeat``
pairs back to back:
  pyarrow  get every object, pyarrow.csv.read_csv (all columns as text), write one
           zstd Parquet file per object to local disk: the same I/O, no validation.
           GETs run ahead of the parsing exactly as ingest_files runs them
           (``prefetched``, READ_AHEAD in flight), so neither side wins by I/O
  ingest   lakehouse.ingest.landing.reader.ingest_files into a new catalog whose bronze
           and quarantine tables exist but are empty, as after a source's first run
           (validate each value against its declared type, quarantine and bronze
           commits with the files)
Usage: python -m bench.landing_throughput [--files 20] [--rows 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import tempfile
import time

from bench.common import Figure, fresh_catalog, local_services

CHANNELS = ["email", "search", "social", "display"]


def csv_file(rows: int, seed: int) -> tuple[bytes, int]:
    """A marketing_spend CSV with about 1% rows that break the declared types."""
    rng = random.Random(seed)
    lines = ["spend_date,channel,campaign,spend,currency"]
    bad = 0
    for n in range(rows):
        spend = f"{rng.uniform(0, 5000):.2f}"
        if rng.random() < 0.01:
            spend, bad = "n/a", bad + 1
        day = 1 + n % 28
        lines.append(f"2026-11-{day:02d},{rng.choice(CHANNELS)},c-{n % 97},{spend},EUR")
    return ("\n".join(lines) + "\n").encode(), bad


def run(files: int = 20, rows: int = 10_000, repeat: int = 3) -> list[Figure]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from lakehouse.declarations.layouts import QUARANTINE
    from lakehouse.declarations.sources import sources
    from lakehouse.ingest.landing.reader import (
        READ_AHEAD,
        ingest_files,
        list_new_files,
        prefetched,
    )
    from lakehouse.settings import get_settings
    from lakehouse.tables.commits import ensure_table
    from resources.s3 import S3Resource

    with local_services("s3") as state:
        source = sources().landing_source("marketing_spend")
        s3 = S3Resource().client()
        bucket = get_settings().landing_bucket
        s3.create_bucket(Bucket=bucket)
        bad = 0
        for i in range(files):
            body, n_bad = csv_file(rows, i)
            bad += n_bad
            s3.put_object(Bucket=bucket, Key=f"{source.key_prefix}f{i:04d}.csv", Body=body)
        keys = list_new_files(s3, bucket, source, set(), limit=files)
        names = list(source.columns)

        def pyarrow_write() -> float:
            out = tempfile.mkdtemp(dir=state)
            start = time.perf_counter()

            def get(version: str) -> tuple[str, bytes]:
                key = version.rpartition("@")[0]
                return key, s3.get_object(Bucket=bucket, Key=key)["Body"].read()

            for key, body in prefetched(get, keys, READ_AHEAD):
                options = pacsv.ConvertOptions(column_types={c: pa.string() for c in names})
                table = pacsv.read_csv(io.BytesIO(body), convert_options=options)
                pq.write_table(table, f"{out}/{key.replace('/', '_')}.parquet", compression="zstd")
            return time.perf_counter() - start

        def ingest() -> float:
            catalog = fresh_catalog(state)
            # creating the tables is a once-per-source cost, not a per-batch one
            ensure_table(catalog, source.bronze_table, source.layout)
            ensure_table(catalog, source.quarantine_table, QUARANTINE)
            start = time.perf_counter()
            batch = ingest_files(catalog, s3, bucket, source, keys, "bench")
            elapsed = time.perf_counter() - start
            assert batch.landed + batch.quarantined == files * rows, batch
            assert batch.quarantined == bad, (batch.quarantined, bad)
            return elapsed

        ingest()  # warm-up
        pairs = [(pyarrow_write(), ingest()) for _ in range(repeat)]
    total = files * rows
    base_s = statistics.median(p for p, _ in pairs)
    ingest_s = statistics.median(i for _, i in pairs)
    ratio = statistics.median(p / i for p, i in pairs)
    name = "landing -> bronze"
    return [
        Figure(name, "rows (files x rows)", f"{total:,} ({files} x {rows:,}; {bad} bad)"),
        Figure(name, "pyarrow csv -> parquet", f"{base_s:.2f} s ({total / base_s:,.0f} rows/s)"),
        Figure(name, "ingest_files", f"{ingest_s:.2f} s ({total / ingest_s:,.0f} rows/s)"),
        Figure(name, "throughput ratio ingest/pyarrow", f"{ratio:.2f}", ">= 0.7"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from bench.run import print_table

    print_table(run(args.files, args.rows, args.repeat))


if __name__ == "__main__":
    main()
