"""Benchmark of evolve and respond.

1. Stage overhead: evolve (1 round) and respond (1 turn) against the tests' fault server,
   which answers at once, side by side with the baseline of sending the same number of
   requests straight through ``chat_many``. The ratio is what the stage adds on top of
   the client (prompt building, lineage, elimination rules, table building).
2. ``--local N``: the demo workload on the embedded llama.cpp server (SmolLM2-135M):
   N seeds from recipes/seeds/demo.jsonl, one evolution round, replies of 1-2 turns, with
   the settings of recipes/demo.yaml. Prints wall time, requests and tokens per second.

Run: .venv/bin/python bench/bench_generate.py [--rows 2000] [--local 40]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fault_server import FaultServer  # noqa: E402

from curation.client import ChatRequest, Endpoint, EndpointConfig, chat_many  # noqa: E402
from curation.evolve import EvolveConfig, evolve_table  # noqa: E402
from curation.io import conversations_from_rows  # noqa: E402
from curation.respond import RespondConfig, respond_table  # noqa: E402


def seed_rows(n: int) -> list[dict]:
    return [{"id": f"seed{i}", "messages": [{"role": "user", "content": f"Explain idea number {i} in detail."}],
             "source": "bench", "category": "general"} for i in range(n)]


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


class ClientMeter:
    """Wraps ``chat_many`` inside a stage module: records the requests and the time spent in it."""

    def __init__(self, module) -> None:
        self.module, self.original = module, module.chat_many
        self.requests: list[ChatRequest] = []
        self.seconds = 0.0

    def __enter__(self) -> "ClientMeter":
        def metered(requests, endpoint, journal=None, progress=True):
            self.requests.extend(requests)
            value, secs = timed(lambda: self.original(requests, endpoint, journal=journal, progress=progress))
            self.seconds += secs
            return value
        self.module.chat_many = metered
        return self

    def __exit__(self, *exc) -> None:
        self.module.chat_many = self.original


def overhead(rows: int) -> None:
    import curation.evolve
    import curation.respond

    table = conversations_from_rows(seed_rows(rows))
    # The fault server echoes the evolving prompt, markers included: no marker rule here,
    # so every rewrite is answered and the request count is 2 per seed.
    evolve_cfg = EvolveConfig(rounds=1, marker_words=["<never-in-an-echo>"])
    print(f"stage overhead, {rows} seeds, loopback fault server answering at once, 256 in flight")
    print(f"{'run':<40}{'requests':>9}{'seconds':>9}{'req/s':>9}")
    with FaultServer() as server:
        ep = Endpoint(server.base_url, "bench-model", "unused", EndpointConfig(max_in_flight=256))
        for name, module, run in (
            ("evolve, 1 round", curation.evolve, lambda: evolve_table(table, evolve_cfg, ep, progress=False)),
            ("respond, 1 turn", curation.respond, lambda: respond_table(table, RespondConfig(turns="1"), ep, progress=False)),
        ):
            with ClientMeter(module) as meter:
                _, stage_s = timed(run)
            n = len(meter.requests)
            # the same requests, again, straight through the client: the baseline
            _, base_s = timed(lambda: chat_many(meter.requests, ep, progress=False))
            print(f"{'chat_many, the same requests (baseline)':<40}{n:>9}{base_s:>9.2f}{n / base_s:>9.0f}")
            print(f"{name:<40}{n:>9}{stage_s:>9.2f}{n / stage_s:>9.0f}")
            print(f"  {name}: time ratio stage/baseline {stage_s / base_s:.2f}; "
                  f"stage's own work {stage_s - meter.seconds:.2f}s = {(stage_s - meter.seconds) / stage_s:.0%} of its time")


def local_demo(n: int) -> None:
    from curation.endpoint import open_endpoint
    from curation.ingest import ingest_paths
    from curation.recipe import load_yaml

    recipe = load_yaml(ROOT / "recipes" / "demo.yaml")
    seeds = ingest_paths([ROOT / "recipes" / "seeds" / "demo.jsonl"]).kept.slice(0, n)
    evolve_cfg = EvolveConfig.model_validate(recipe.get("evolve") or {})
    respond_cfg = RespondConfig.model_validate(recipe.get("respond") or {})
    t0 = time.perf_counter()
    with open_endpoint(EndpointConfig.model_validate(recipe.get("endpoint") or {})) as ep:
        start_s = time.perf_counter() - t0
        evolved, evolve_s = timed(lambda: evolve_table(seeds, evolve_cfg, ep, progress=False))
        answered, respond_s = timed(lambda: respond_table(evolved.kept, respond_cfg, ep, progress=False))
    total = time.perf_counter() - t0
    print(f"\nembedded SmolLM2-135M-Instruct on llama.cpp, demo recipe settings, {n} seeds")
    print(f"server start {start_s:.1f}s")
    for name, res, secs in (("evolve", evolved, evolve_s), ("respond", answered, respond_s)):
        u = res.stats["usage"]
        print(f"{name:<8} {res.kept.num_rows:>4} kept {res.rejected.num_rows:>4} rejected  {u['requests']:>4} requests "
              f"{u['completion_tokens']:>6} completion tokens  {secs:7.1f}s  {u['completion_tokens'] / secs:6.1f} tok/s")
    print(f"evolve rejects by reason: {dict(evolved.rejected_by_reason())}")
    print(f"respond: {answered.stats}")
    print(f"total {total:.1f}s ({total / 60:.1f} min)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="seeds for the overhead run")
    parser.add_argument("--local", type=int, default=0, help="seeds for the demo run on the local model (0: skip)")
    args = parser.parse_args()
    overhead(args.rows)
    if args.local:
        local_demo(args.local)


if __name__ == "__main__":
    main()
