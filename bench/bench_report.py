"""Benchmark of `curate report`, and its token-count bar, on the whole shared data.

Run:  .venv/bin/python bench/bench_report.py [--seq-len 8192]

1. Ingests every file under ../shared/data (cached as a Parquet under /tmp).
2. Conversation-Parquet path, side by side on the same table: ``build_report`` (the pack
   stage's batch renderer, threaded encode) against the straightforward loop that calls
   ``render()`` per conversation and sums in Python.
3. Packs the table (``pack_table`` + ``write_pack_dir``), then times ``build_report`` on the
   packed directory (it reads ``samples.parquet``) against an independent count that reads
   every shard as a trainer would (labels and ``seq_lens`` per packed row, sample spans
   joined with the categories in samples.parquet), and checks the two agree exactly.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curation.ingest import IngestConfig, ingest_many  # noqa: E402
from curation.io import read_conversations, write_table  # noqa: E402
from curation.pack import PackConfig, pack_table, write_pack_dir  # noqa: E402
from curation.render import render  # noqa: E402
from curation.report import ReportConfig, build_report  # noqa: E402
from curation.tokenizer import load_tokenizer  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
CACHE = Path(tempfile.gettempdir()) / "curation-bench-report" / "all-declared.parquet"


# Single-category sources declare their Table 1 category (as recipes/curate-existing.yaml
# does); the rest stay untagged here, since tagging is not what is measured.
DECLARED = {
    "gsm8k": "math",
    "codealpaca": "coding",
    "gpteacher/roleplay-simple-deduped-roleplay-instruct.json": "roleplay",
    "llamafactory/glaive_toolcall_en_demo.json": "tool_use",
    "llamafactory/reason_tool_use_demo_50.jsonl": "tool_use",
    "toolbench/answer": "tool_use",
    "bfcl": "tool_use",
    "llamafactory/identity.json": "steering",
}


def conversations():
    if not CACHE.exists():
        declared = [SHARED / p for p in DECLARED]
        rest = [p for p in sorted(SHARED.iterdir()) if p.is_dir() and p not in declared]
        rest += [p for p in sorted((SHARED / "gpteacher").iterdir()) if p not in declared]
        rest += [p for p in sorted((SHARED / "llamafactory").iterdir()) if p not in declared]
        rest += [p for p in sorted((SHARED / "toolbench").iterdir()) if p not in declared]
        rest = [p for p in rest if p.name not in ("gpteacher", "llamafactory", "toolbench")]
        rest = [p for p in rest if p.is_dir() or p.suffix in (".json", ".jsonl")]
        jobs = [([SHARED / p], IngestConfig(category=c)) for p, c in DECLARED.items()] + [(rest, IngestConfig())]
        write_table(ingest_many(jobs).kept, CACHE)
    return read_conversations(CACHE)


def naive_counts(table, tokenizer) -> dict:
    """Baseline: one render() per conversation, Python sums per category."""
    out = defaultdict(lambda: [0, 0])
    for messages, category in zip(table.column("messages").to_pylist(), table.column("category").to_pylist()):
        ids, labels = render(messages, tokenizer)
        out[category or "untagged"][0] += len(ids)
        out[category or "untagged"][1] += int(np.count_nonzero(labels != -100))
    return dict(out)


def shard_counts(pack_dir: Path) -> dict:
    """Independent count: every sample span of every shard, categories from samples.parquet."""
    from datasets import Dataset

    samples = pq.read_table(pack_dir / "samples.parquet", columns=["sample_id", "category"]).to_pydict()
    category_of = dict(zip(samples["sample_id"], (c or "untagged" for c in samples["category"])))
    out = defaultdict(lambda: [0, 0])
    for shard in sorted(pack_dir.glob("*.arrow")):
        table = Dataset.from_file(str(shard)).data.table
        labels = table.column("labels").combine_chunks()
        offsets = labels.offsets.to_numpy()
        trained = (labels.values.to_numpy() != -100).astype(np.int64)
        seq_lens, sample_ids = table.column("seq_lens").to_pylist(), table.column("sample_ids").to_pylist()
        for row, (lens, ids) in enumerate(zip(seq_lens, sample_ids)):
            start = offsets[row]
            for n, sid in zip(lens, ids):
                counts = out[category_of[sid]]
                counts[0] += n
                counts[1] += int(trained[start : start + n].sum())
                start += n
    return dict(out)


def report_counts(report: dict) -> dict:
    return {r["category"]: [r["total_tokens"], r["output_tokens"]] for r in report["categories"] if r["total_tokens"]}


def check_bar(pack_dir: Path) -> int:
    """The bar on an existing pack directory: report counts == independent shard count."""
    report, t_report = timed(build_report, pack_dir, ReportConfig())
    independent, t_indep = timed(shard_counts, pack_dir)
    equal = report_counts(report) == independent
    print(f"{pack_dir}: {report['totals']['total_tokens']:,} tokens; report {t_report:.3f} s, independent count {t_indep:.3f} s")
    for row in report["categories"]:
        got = independent.get(row["category"], [0, 0])
        print(f"  {row['category']:<20} total {row['total_tokens']:>11,} vs {got[0]:>11,}   output {row['output_tokens']:>11,} vs {got[1]:>11,}")
    print(f"bar: report tokens == independent count of the shards, per category: {'PASS' if equal else 'FAIL'}")
    return 0 if equal else 1


def timed(fn, *args):
    t0 = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seq-len", type=int, default=8192)
    parser.add_argument("--check", type=Path, help="Only check the bar on an existing pack directory.")
    args = parser.parse_args()
    if args.check:
        sys.exit(check_bar(args.check))

    table = conversations()
    tokenizer = load_tokenizer("llama3")
    print(f"data: {table.num_rows:,} conversations ingested from {SHARED}")

    report, t_report = timed(build_report, CACHE, ReportConfig())
    naive, t_naive = timed(naive_counts, table, tokenizer)
    tokens = report["totals"]["total_tokens"]
    assert report_counts(report) == {k: v for k, v in naive.items() if v[0]}, "conversation path disagrees with render()"
    print("\nconversation Parquet -> Table 1 (same table, same tokenizer)")
    print(f"  build_report          {t_report:7.2f} s  {tokens / t_report:12,.0f} tokens/s  (includes tokenizer load)")
    print(f"  render() loop         {t_naive:7.2f} s  {tokens / t_naive:12,.0f} tokens/s")
    print(f"  speed-up              {t_naive / t_report:7.2f} x   counts identical: yes")

    with tempfile.TemporaryDirectory() as tmp:
        pack_dir = Path(tmp) / "pack"
        result, t_pack = timed(pack_table, table, PackConfig(seq_len=args.seq_len, shards=4), tokenizer)
        write_pack_dir(result, pack_dir)
        packed, t_packed = timed(build_report, pack_dir, ReportConfig())
        independent, t_indep = timed(shard_counts, pack_dir)
        equal = report_counts(packed) == independent
        p = packed["packing"]
        print(f"\npacked directory ({p['num_packs']:,} packs of {p['seq_len']}, efficiency {100 * p['efficiency']:.2f}%, "
              f"{packed['totals']['total_tokens']:,} tokens, pack took {t_pack:.1f} s)")
        print(f"  build_report (samples.parquet)   {t_packed:7.3f} s")
        print(f"  independent count of the shards  {t_indep:7.3f} s")
        print(f"  speed-up                         {t_indep / t_packed:7.1f} x")
        print(f"  bar: report tokens == independent count of the shards, per category: {'PASS' if equal else 'FAIL'}")
        for row in packed["categories"]:
            got = independent.get(row["category"], [0, 0])
            print(f"    {row['category']:<20} total {row['total_tokens']:>11,} vs {got[0]:>11,}   output {row['output_tokens']:>11,} vs {got[1]:>11,}")
        if not equal:
            sys.exit(1)


if __name__ == "__main__":
    main()
