"""Benchmark of `curate dedup`: the vectorised stage vs the straightforward datasketch loop.

Run:  .venv/bin/python bench/bench_dedup.py [--rows 1000000] [--baseline-rows 10000]

1. Synthesises ROWS conversations from the shared data by perturbation (written once to
   a cache Parquet under /tmp): distinct rows mixed from real prompts and sentences, near
   duplicates (a few words replaced, dropped or inserted) and exact copies (case and
   punctuation noise).
2. On the first BASELINE_ROWS of it, in this process, with identical parameters: the
   baseline (one datasketch.MinHash per row, ``update`` per shingle, MinHashLSH
   ``query`` + ``insert``, candidates confirmed by ``jaccard``) against ``dedup_table``.
3. ``dedup_table`` on all ROWS in a fresh subprocess, reporting time and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curation.dedup import DedupConfig, dedup_table, lsh_params, normalised_words, key_texts  # noqa: E402
from curation.io import conversations_from_rows, read_conversations  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
SOURCES = ["alpaca_eval", "gsm8k", "codealpaca", "gpteacher", "llamafactory/alpaca_en_demo.json", "hh_rlhf", "oasst", "seeds", "instructionwild"]
GENERATORS = ["gpt4_1106_preview", "claude-2", "gpt-3.5-turbo-0301", "vicuna-13b", None]


def _pools() -> tuple[list[str], list[str], list[str]]:
    """Real prompts, sentences and words from the shared data."""
    from curation.ingest import ingest_paths

    table = ingest_paths([SHARED / s for s in SOURCES]).kept
    prompts, sentences = [], []
    for conv in table.column("messages").to_pylist():
        for m in conv:
            if m["role"] == "user":
                prompts.append(m["content"])
            elif m["role"] == "assistant":
                sentences.extend(s for s in re.split(r"(?<=[.!?])\s+|\n+", m["content"]) if len(s.split()) >= 4)
    words = sorted({w for s in sentences[:50000] for w in s.split()})
    return sorted(set(prompts)), sorted(set(sentences)), words


def _perturb(text: str, rng: np.random.Generator, words: list[str], rate: float) -> str:
    toks = text.split(" ")
    for _ in range(max(1, int(len(toks) * rate))):
        i = int(rng.integers(len(toks)))
        op = rng.integers(3)
        if op == 0:
            toks[i] = words[int(rng.integers(len(words)))]
        elif op == 1 and len(toks) > 1:
            del toks[i]
        else:
            toks.insert(i, words[int(rng.integers(len(words)))])
    return " ".join(toks)


def _noise(text: str, rng: np.random.Generator) -> str:
    """Changes the normalised key ignores: case, spacing, punctuation."""
    choice = rng.integers(3)
    return text.upper() if choice == 0 else ("  " + text.replace(" ", "  ")) if choice == 1 else text + " !!"


def synthesise(n: int, seed: int = 0, batch: int = 50000):
    """Yield conversation tables totalling n rows: 70% distinct, 20% near and 10% exact duplicates."""
    prompts, sentences, words = _pools()
    rng = np.random.default_rng(seed)
    made: list[dict] = []
    done = 0
    while done < n:
        rows = []
        for _ in range(min(batch, n - done)):
            kind = rng.random()
            if kind < 0.3 and made:
                base = made[int(rng.integers(len(made)))]
                if kind < 0.1:
                    msgs = [{"role": m["role"], "content": _noise(m["content"], rng)} for m in base["messages"]]
                else:
                    rate = float(rng.uniform(0.01, 0.08))
                    msgs = [base["messages"][0], {"role": "assistant", "content": _perturb(base["messages"][1]["content"], rng, words, rate)}]
            else:
                prompt = prompts[int(rng.integers(len(prompts)))]
                k = int(rng.integers(2, 7))
                answer = " ".join(sentences[int(i)] for i in rng.integers(len(sentences), size=k))
                msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
            row = {"id": f"syn-{done + len(rows):07d}", "messages": msgs, "source": "synthetic",
                   "generator": GENERATORS[int(rng.integers(len(GENERATORS)))]}
            rows.append(row)
            if len(made) < 200000:
                made.append(row)
            elif rng.random() < 0.05:
                made[int(rng.integers(len(made)))] = row
        done += len(rows)
        yield conversations_from_rows(rows)


def synthetic_parquet(n: int, seed: int = 0) -> Path:
    path = Path(f"/tmp/curation_bench_dedup_{n}_{seed}.parquet")
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        writer = None
        for part in synthesise(n, seed):
            writer = writer or pq.ParquetWriter(tmp, part.schema, compression="zstd")
            writer.write_table(part)
        writer.close()
        os.replace(tmp, path)
    return path


def baseline_dedup(table: pa.Table, config: DedupConfig) -> int:
    """The straightforward datasketch loop; returns how many rows it removes."""
    from datasketch import MinHash, MinHashLSH

    bands, rows = lsh_params(config.threshold, config.num_perm, config.false_positive_weight, config.false_negative_weight)
    lsh = MinHashLSH(num_perm=config.num_perm, params=(bands, rows))
    all_words = normalised_words(key_texts(table.column("messages"), config.key)).to_pylist()
    parent = list(range(len(all_words)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    sketches = {}
    for i, w in enumerate(all_words):
        if not w:
            continue
        n = config.ngram
        shingles = {" ".join(w[j : j + n]) for j in range(max(len(w) - n + 1, 1))}
        m = MinHash(num_perm=config.num_perm, seed=config.seed)
        for s in shingles:
            m.update(s.encode("utf-8"))
        for other in lsh.query(m):
            if m.jaccard(sketches[other]) >= config.threshold:
                ra, rb = find(i), find(other)
                parent[max(ra, rb)] = min(ra, rb)
        lsh.insert(i, m)
        sketches[i] = m
    return sum(1 for i in range(len(all_words)) if find(i) != i)


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _child(path: str, key: str) -> None:
    """Runs in a fresh process so its peak RSS is the stage's own."""
    t0 = time.perf_counter()
    table = read_conversations(path)
    t1, c1 = time.perf_counter(), time.process_time()
    result = dedup_table(table, DedupConfig(key=key))
    t2, c2 = time.perf_counter(), time.process_time()
    print(json.dumps({"rows": table.num_rows, "read_s": t1 - t0, "dedup_s": t2 - t1, "cpu_s": c2 - c1, "kept": result.kept.num_rows,
                      "rejected": result.rejected_by_reason(), "peak_rss_gib": _peak_rss_gib(),
                      "clusters": result.stats["clusters"], "lsh": [result.stats["lsh_bands"], result.stats["lsh_rows"]]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--baseline-rows", type=int, default=10_000)
    ap.add_argument("--key", default="conversation", choices=["prompt", "conversation"])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return _child(args.child, args.key)

    t = time.perf_counter()
    path = synthetic_parquet(args.rows)
    print(f"synthetic data: {args.rows} rows at {path} ({time.perf_counter() - t:.1f} s, {path.stat().st_size / 2**20:.0f} MiB)")
    config = DedupConfig(key=args.key)
    subset = pq.ParquetFile(path).read_row_group(0).slice(0, args.baseline_rows)
    subset = read_conversations(path).slice(0, args.baseline_rows) if subset.num_rows < args.baseline_rows else subset
    print(f"parameters: key={config.key} threshold={config.threshold} num_perm={config.num_perm} ngram={config.ngram} "
          f"lsh(bands, rows)={lsh_params(config.threshold, config.num_perm, config.false_positive_weight, config.false_negative_weight)}")

    t, c = time.perf_counter(), time.process_time()
    base_removed = baseline_dedup(subset, config)
    base_s, base_cpu = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    fast = dedup_table(subset, config)
    fast_s, fast_cpu = time.perf_counter() - t, time.process_time() - c
    n = subset.num_rows
    print(f"baseline loop   : {n} rows in {base_s:8.2f} s wall, {base_cpu:8.2f} s CPU = {n / base_cpu:10.0f} rows/CPU-s, removed {base_removed}")
    print(f"dedup_table     : {n} rows in {fast_s:8.2f} s wall, {fast_cpu:8.2f} s CPU = {n / fast_cpu:10.0f} rows/CPU-s, removed {fast.rejected.num_rows}")
    print(f"speed-up        : {base_s / fast_s:.1f}x wall, {base_cpu / fast_cpu:.1f}x CPU, on identical data and parameters")

    out = subprocess.run([sys.executable, __file__, "--child", str(path), "--key", args.key], capture_output=True, text=True, check=True)
    full = json.loads(out.stdout.strip().splitlines()[-1])
    rate = full["rows"] / full["cpu_s"]
    print(f"dedup_table full: {full['rows']} rows in {full['dedup_s']:8.2f} s wall, {full['cpu_s']:8.2f} s CPU = {rate:10.0f} rows/CPU-s "
          f"({rate / (n / base_cpu):.1f}x the baseline's rows/CPU-s), read {full['read_s']:.1f} s")
    print(f"                  kept {full['kept']}, rejected {full['rejected']}, clusters {full['clusters']}")
    print(f"peak RSS        : {full['peak_rss_gib']:.2f} GiB (whole process: Arrow table + signatures + outputs)")


if __name__ == "__main__":
    main()
