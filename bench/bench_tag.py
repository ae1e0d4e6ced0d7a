"""Throughput of the offline tagger (bar: >= 5,000 conversations/s on one CPU core).

    .venv/bin/python bench/bench_tag.py [--rows 20000]

Tags a mix of real shared-data conversations (maths, code, role-play, tool traces, everyday
prompts, multi-turn OASST) with ``tag_table``, the whole stage core including meta
updates, and prints conversations per second next to the baseline: the same rows tagged
by a plain keyword-lookup function (one lowercase + a few ``in`` tests per row), the
cheapest thing that could call itself a tagger.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from curation.ingest import ingest_paths  # noqa: E402
from curation.tag import TagConfig, shipped_tagger, tag_table  # noqa: E402

SOURCES = [
    "gsm8k/train.jsonl", "codealpaca/code_alpaca_2k.json", "gpteacher/roleplay-simple-deduped-roleplay-instruct.json",
    "llamafactory", "alpaca_eval/gpt4_1106_preview.json", "oasst/en_100_tree.jsonl", "toolbench", "bfcl",
]


def keyword_baseline(messages_list: list[list[dict]]) -> list[str]:
    out = []
    for messages in messages_list:
        text = " ".join(m["content"][:2000] for m in messages if m["role"] != "assistant").lower()
        if "<tool" in text:
            out.append("tool_use")
        elif "def " in text or "```" in text or "code" in text:
            out.append("coding")
        elif "calculate" in text or "how many" in text:
            out.append("math")
        else:
            out.append("general")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--rows", type=int, default=20000)
    args = ap.parse_args()
    base = ingest_paths([args.data / s for s in SOURCES]).kept
    reps = -(-args.rows // base.num_rows)
    order = np.random.default_rng(0).permutation(base.num_rows * reps)[: args.rows]  # a mix, not source blocks
    table = pa.concat_tables([base] * reps).take(pa.array(order))
    print(f"rows: {table.num_rows} (from {base.num_rows} real conversations, {len(SOURCES)} sources)")
    shipped_tagger()  # load the model once, outside the timing

    # CPU seconds of this process (single-threaded), so other jobs on a shared machine do
    # not count against it; wall-clock seconds are printed too.
    w0, c0 = time.perf_counter(), time.process_time()
    result = tag_table(table, TagConfig(retag_declared=True))
    tag_wall, tag_cpu = time.perf_counter() - w0, time.process_time() - c0
    w0, c0 = time.perf_counter(), time.process_time()
    keyword_baseline(table.column("messages").to_pylist())
    kw_wall, kw_cpu = time.perf_counter() - w0, time.process_time() - c0

    n = table.num_rows
    rate, kw_rate = n / tag_cpu, n / kw_cpu
    print(f"tag_table (rules + model, meta):  {tag_cpu:6.2f} CPU s  {rate:9,.0f} conversations/s  (wall {n / tag_wall:,.0f}/s)")
    print(f"keyword baseline (messages read): {kw_cpu:6.2f} CPU s  {kw_rate:9,.0f} conversations/s  (wall {n / kw_wall:,.0f}/s)")
    print(f"ratio tagger / baseline speed: {rate / kw_rate:.2f}   bar >= 5,000/s: {'PASS' if rate >= 5000 else 'FAIL'}")
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("decided by:", result.stats["by_source"])


if __name__ == "__main__":
    main()
