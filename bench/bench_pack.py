"""Benchmark of the pack stage on all the shared data, ingested and filtered.

Prints: tokenize and tokenize+pack throughput (tokens/s), the packing bars
(efficiency, packs vs the lower bound, shard balance), and, on the same tokenized
samples in the same run, our best-fit-decreasing against TRL's
``pack_dataset(strategy="bfd")`` (time, packs, efficiency). TRL is optional
(``pip install -e .[bench]``); without it the TRL column is skipped with a message.

    .venv/bin/python bench/bench_pack.py [--seq-len 8192] [--shards 4] [--repeat 3]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from curation.filter import filter_table
from curation.ingest import ingest_paths
from curation.pack import PackConfig, Sample, _pack_rows, best_fit_decreasing, pack_table
from curation.render import tokenize_table
from curation.tokenizer import load_tokenizer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Declared category per shared-data folder (the tag stage would assign these; here they
# only exercise the per-shard category balance).
FOLDER_CATEGORY = {
    "gsm8k": "math",
    "codealpaca": "coding",
    "toolbench": "tool_use",
    "bfcl": "tool_use",
    "hh_rlhf": "steering",
    "refusal_direction": "steering",
    "jailbreakbench": "steering",
    "arena_hard": "domain_expert",
}


def category_of(source: str) -> str:
    folder, _, rest = source.partition("/")
    if folder == "gpteacher":
        return "roleplay" if "roleplay" in rest else "tool_use"
    if folder == "llamafactory":
        return "tool_use" if "tool" in rest else ("steering" if "identity" in rest else "general")
    return FOLDER_CATEGORY.get(folder, "general")


def best_of(repeat: int, fn):
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), value


def trl_bfd(samples: list[Sample], seq_len: int, batch_size: int | None):
    from datasets import Dataset
    from trl import pack_dataset

    ds = Dataset.from_dict(
        {"input_ids": [s.input_ids for s in samples], "labels": [s.labels for s in samples]},
    )
    kwargs = {"batch_size": batch_size} if batch_size else {}
    kwargs["keep_in_memory"] = True
    packed = pack_dataset(ds, seq_len, strategy="bfd", map_kwargs=kwargs)
    return packed.num_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    t0 = time.perf_counter()
    ingested = ingest_paths([DATA]).kept
    cats = pa.array([category_of(s) for s in ingested.column("source").to_pylist()], pa.string())
    ingested = ingested.set_column(ingested.schema.get_field_index("category"), "category", cats)
    filtered = filter_table(ingested).kept
    print(f"data: {ingested.num_rows:,} conversations ingested from {DATA}, {filtered.num_rows:,} after the filter "
          f"({time.perf_counter() - t0:.1f} s)")

    t0 = time.perf_counter()
    tok = load_tokenizer()
    print(f"tokenizer: llama3 (tiktoken), load {time.perf_counter() - t0:.2f} s, sha256 {tok.sha256[:16]}...")

    tok_best, tok_med, tokenized = best_of(args.repeat, lambda: tokenize_table(filtered, tok))
    tokens = int(tokenized.lengths().sum())
    print(f"tokenize: {tokens:,} tokens, best {tok_best:.2f} s ({tokens / tok_best:,.0f} tokens/s), median {tok_med:.2f} s")

    config = PackConfig(seq_len=args.seq_len, shards=args.shards)
    full_best, full_med, result = best_of(args.repeat, lambda: pack_table(filtered, config, tok))
    s = result.stats
    print(f"tokenize+pack (pack_table: render, BFD, shuffle, {args.shards} shards): best {full_best:.2f} s "
          f"({s['total_tokens'] / full_best:,.0f} tokens/s), median {full_med:.2f} s")
    print(f"  samples {s['num_samples']:,}  tokens {s['total_tokens']:,}  loss tokens {s['loss_tokens']:,}  "
          f"rejected {s['dropped']}")
    print(f"  packs {s['num_packs']:,}  lower bound {s['lower_bound_packs']:,}  ratio {s['num_packs'] / s['lower_bound_packs']:.4f}  "
          f"efficiency {100 * s['efficiency']:.3f}%")
    tokens_per_shard = [x["tokens"] for x in s["shards"]]
    print(f"  shards: tokens {tokens_per_shard}, spread {s['shard_token_spread']:,} tokens "
          f"({100 * s['shard_token_spread'] / max(tokens_per_shard):.3f}%), worst category gap {s['max_category_gap_pp']:.3f} pp")

    spread_limit = max(0.001 * max(tokens_per_shard), args.seq_len)
    for label, ok in [
        ("efficiency >= 99.5%", s["efficiency"] >= 0.995),
        ("packs <= 1.002 x lower bound", s["num_packs"] <= 1.002 * s["lower_bound_packs"]),
        (f"shard token spread <= max(0.1%, one pack) = {spread_limit:,.0f}", s["shard_token_spread"] <= spread_limit),
        ("category share per shard within 1 pp of the whole", s["max_category_gap_pp"] <= 1.0),
    ]:
        print(f"  bar {label}: {'PASS' if ok else 'FAIL'}")

    # Same samples, packing step only: ours vs TRL.
    samples = [Sample(i, str(i), ids, labels) for i, (ids, labels) in enumerate(zip(tokenized.input_ids, tokenized.labels))
               if (labels != -100).any() and len(ids) <= args.seq_len]
    lengths = [len(x.input_ids) for x in samples]
    total = sum(lengths)
    bound = math.ceil(total / args.seq_len)

    def ours():
        bins = best_fit_decreasing(lengths, args.seq_len)
        order = np.random.default_rng(0).permutation(len(bins))
        _pack_rows(samples, [bins[i] for i in order])
        return len(bins)

    rows = []
    best, med, n = best_of(args.repeat, ours)
    rows.append(("curation BFD (whole dataset)", best, med, n))
    try:
        import trl  # noqa: F401
    except ImportError:
        print("trl is not installed: skipping the TRL column (pip install -e '.[bench]' after torch==2.13.0)")
    else:
        best, med, n = best_of(args.repeat, lambda: trl_bfd(samples, args.seq_len, None))
        rows.append((f"TRL {trl.__version__} pack_dataset bfd (default map batches of 1000)", best, med, n))
        best, med, n = best_of(args.repeat, lambda: trl_bfd(samples, args.seq_len, len(samples)))
        rows.append((f"TRL {trl.__version__} pack_dataset bfd (one batch = whole dataset)", best, med, n))
    print(f"\npacking only, same {len(samples):,} tokenized samples, {total:,} tokens, seq_len {args.seq_len}, "
          f"lower bound {bound:,} packs (best / median of {args.repeat})")
    print(f"{'packer':<62} {'best s':>8} {'median s':>9} {'packs':>7} {'efficiency':>11} {'packs/bound':>12}")
    for name, best, med, n in rows:
        print(f"{name:<62} {best:>8.3f} {med:>9.3f} {n:>7,} {100 * total / (n * args.seq_len):>10.3f}% {n / bound:>12.4f}")
    if len(rows) > 1:
        ref = rows[0]
        for name, best, _, n in rows[1:]:
            print(f"curation vs {name}: {best / ref[1]:.2f}x faster (best times), {n - ref[3]:,} fewer packs")


if __name__ == "__main__":
    main()
