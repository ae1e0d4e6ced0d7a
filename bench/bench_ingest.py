"""Ingest throughput over all the shared data (../shared/data): records/s and MB/s.

    .venv/bin/python bench/bench_ingest.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from curation.ingest import ingest_paths

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = sum(f.stat().st_size for f in SHARED.rglob("*") if f.is_file())
    best = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        res = ingest_paths([SHARED])
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    n_in = res.stats["records"]
    print(f"ingest: {n_in:,} records from {len(res.stats['files'])} files ({size / 1e6:.1f} MB) -> "
          f"{res.kept.num_rows:,} conversations + {res.rejected.num_rows:,} rejects")
    print(f"ingest: best of {args.repeat}: {best:.2f} s = {n_in / best:,.0f} records/s, {size / 1e6 / best:.1f} MB/s")


if __name__ == "__main__":
    main()
