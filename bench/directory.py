"""A large directory file: the first mirror, a one-row change, and a writer meanwhile.

    .venv/bin/python bench/directory.py                      # 1,000,000 rows on SQLite
    .venv/bin/python bench/directory.py --rows 200000 --postgres postgresql+psycopg://...

Writes a CRM export of ``--rows`` rows (about 48 bytes each; ten contacts a customer) in a
temporary folder, then, each in a fresh process so that its peak RSS is its own:

- the reference: a plain ``csv`` read of the same file (every row read, nothing kept);
- the first mirror of the file (`syncd customers import --mirror`, as the daemon applies it);
- the same file with one row changed;

and, during each mirror, a concurrent writer adding a customer every 0.2 s (as `syncd
customers add` or `tasks add` would): its longest wait is what the mirror made it wait.
Targets (issue 19): 1,000,000 rows in <= 30 s and <= 400 MB, a one-row change in <= 10 s,
no other writer waiting more than 1 s.  The temporary folder is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine

from syncd.store.database import open_database
from syncd.store.directory import ensure_customer

HEADER = "customer,domains,contact_name,contact_email\n"

# One measured step, in a process of its own: prints {"seconds", "rss_mb", ...} as JSON.
_STEP = r"""
import csv, json, resource, sys, time
from pathlib import Path
what, path, url = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
started = time.perf_counter()
out = {}
if what == "reference":
    with path.open(newline="") as handle:
        out["rows"] = sum(1 for _ in csv.reader(handle))
else:
    from syncd.domain.directory_file import RowReader, text_stream
    from syncd.engine.directory_sync import read_file
    from syncd.store.database import open_database
    from syncd.store.directory_mirror import mirror_directory
    engine = open_database(url)
    done = mirror_directory(
        engine, RowReader(text_stream(read_file(path)), str(path)), mirror=True, source="bench"
    )
    out["counts"] = done.counts
out["seconds"] = time.perf_counter() - started
used = resource.getrusage(resource.RUSAGE_SELF)
out["cpu_s"] = used.ru_utime + used.ru_stime
out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def write_export(path: Path, rows: int, changed: int | None = None) -> None:
    """``rows`` rows, ten contacts a customer; ``changed``: that row's contact renamed."""
    with path.open("w") as out:
        out.write(HEADER)
        for i in range(rows):
            c = i // 10
            name = f"P {i}" if i != changed else f"Renamed {i}"
            out.write(f"Cust {c},c{c}.com,{name},p{i}@c{c}.com\n")


class Writer(threading.Thread):
    """Adds a customer every 0.2 s; remembers the longest time one took."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.engine = create_engine(url) if url.startswith("postgresql") else open_database(url)
        self.stop = threading.Event()
        self.longest = 0.0
        self.writes = 0
        self.failed = 0

    def run(self) -> None:
        n = 0
        while not self.stop.wait(0.2):
            n += 1
            started = time.perf_counter()
            try:
                with self.engine.begin() as conn:
                    ensure_customer(conn, f"Concurrent {time.time_ns()} {n}", [])
                self.writes += 1
            except Exception as err:  # a writer that gave up waiting
                self.failed += 1
                print(f"  writer failed: {type(err).__name__}: {str(err)[:120]}")
            self.longest = max(self.longest, time.perf_counter() - started)


def step(what: str, path: Path, url: str, *, writer: bool = False) -> dict[str, object]:
    concurrent = Writer(url) if writer else None
    if concurrent is not None:
        concurrent.start()
    try:
        done = subprocess.run(
            [sys.executable, "-c", _STEP, what, str(path), url],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        if concurrent is not None:
            concurrent.stop.set()
            concurrent.join()
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")
    out: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    if concurrent is not None:
        out["writer_longest_s"] = round(concurrent.longest, 3)
        out["writer_writes"] = concurrent.writes
        out["writer_failed"] = concurrent.failed
        concurrent.engine.dispose()
    return out


def run(url: str, label: str, export: Path, changed: Path, reference: dict[str, object]) -> None:
    open_database(url).dispose()  # migrated before anything is timed
    base = float(reference["seconds"])  # type: ignore[arg-type]
    base_cpu = float(reference["cpu_s"])  # type: ignore[arg-type]
    for name, path in (("first mirror", export), ("one row changed", changed)):
        got = step("mirror", path, url, writer=True)
        seconds = float(got["seconds"])  # type: ignore[arg-type]
        cpu = float(got["cpu_s"])  # type: ignore[arg-type]
        # CPU seconds too: on a shared machine the wall time says more about the others.
        print(
            f"{label} {name}: {seconds:.1f} s ({seconds / base:.1f}x the reference), "
            f"{cpu:.1f} s of CPU ({cpu / base_cpu:.1f}x the reference's), "
            f"peak RSS {float(got['rss_mb']):.0f} MB, "  # type: ignore[arg-type]
            f"longest concurrent write {got['writer_longest_s']} s "
            f"({got['writer_writes']} writes, {got['writer_failed']} failed); "
            f"{json.dumps(got['counts'])}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", help="an empty PostgreSQL database to run on as well")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="syncd-bench-directory-"))
    try:
        export, changed = root / "export.csv", root / "changed.csv"
        write_export(export, args.rows)
        write_export(changed, args.rows, changed=args.rows // 2)
        size = export.stat().st_size / 2**20
        reference = step("reference", export, "")
        print(
            f"file: {args.rows:,} rows, {size:.1f} MB; reference (a plain csv read): "
            f"{float(reference['seconds']):.2f} s ({float(reference['cpu_s']):.2f} s of CPU), "  # type: ignore[arg-type]
            "peak RSS "
            f"{float(reference['rss_mb']):.0f} MB"  # type: ignore[arg-type]
        )
        if not args.no_sqlite:
            run(f"sqlite:///{root / 'syncd.db'}", "SQLite", export, changed, reference)
        if args.postgres:
            run(args.postgres, "PostgreSQL", export, changed, reference)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
