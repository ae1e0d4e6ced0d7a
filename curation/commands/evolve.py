from __future__ import annotations

from pathlib import Path

import typer

NAME = "evolve"
ORDER = 20
HELP = "Evol-Instruct: rewrite instructions in depth or in breadth through an OpenAI-compatible endpoint; drop failed rewrites."


def command(
    src: Path = typer.Argument(..., help="Conversation Parquet of seed instructions (the first user turn is evolved)."),
    out: Path = typer.Option(..., "--out", help="Conversation Parquet: the seeds plus every round's surviving rewrites."),
    rejects: Path = typer.Option(None, "--rejects", help="Rejects Parquet of failed rewrites (default: OUT with .rejects.parquet)."),
    config: Path = typer.Option(None, "--config", help="Recipe YAML; its `evolve` and `endpoint` sections set the defaults."),
    rounds: int = typer.Option(None, "--rounds", help="Evolution rounds. [default: 1]"),
    seed: int = typer.Option(None, "--seed", help="Seed of the operation draws and request seeds. [default: 0]"),
    operations: str = typer.Option(None, "--operations", help="Operations to draw from, comma-separated. [default: all six]"),
    check_information_gain: bool = typer.Option(
        None, "--check-information-gain/--no-check-information-gain",
        help="Ask the model whether each rewrite adds anything over its parent (one more call). [default: off]",
    ),
    endpoint: str = typer.Option(None, "--endpoint", help="local, or the base URL of an OpenAI-compatible server."),
    model: str = typer.Option(None, "--model", help="Model name on the endpoint."),
    journal: Path = typer.Option(None, "--journal", help="Request journal for resuming (default: OUT with .journal.jsonl)."),
) -> None:
    from ..client import EndpointConfig
    from ..console import print_counts
    from ..endpoint import apply_flags, journal_path, open_endpoint
    from ..evolve import EvolveConfig, evolve_table
    from ..io import read_conversations, write_table
    from ..manifest import Manifest
    from ..recipe import load_stage_config, merge_flags
    from ..stage import default_rejects_path

    flags = {"rounds": rounds, "seed": seed, "check_information_gain": check_information_gain}
    if operations is not None:
        flags["operations"] = [op.strip() for op in operations.split(",") if op.strip()]
    cfg = merge_flags(load_stage_config(config, NAME, EvolveConfig), flags)
    endpoint_cfg = apply_flags(load_stage_config(config, "endpoint", EndpointConfig), endpoint, model)
    rejects = rejects or default_rejects_path(out)
    journal = journal or journal_path(out)

    args = {"src": str(src), "out": str(out), "rejects": str(rejects), "journal": str(journal),
            "config": str(config) if config else None, **cfg.model_dump(), "endpoint": endpoint_cfg.model_dump()}
    manifest = Manifest(NAME, args, [src])
    table = read_conversations(src)
    with open_endpoint(endpoint_cfg) as ep:
        result = evolve_table(table, cfg, ep, journal=journal)
    generated = result.stats["rows_generated"]
    if table.num_rows + generated != result.kept.num_rows + result.rejected.num_rows:
        raise AssertionError(f"{NAME}: seeds {table.num_rows} + rewrites {generated} != kept + rejected")
    write_table(result.kept, out)
    write_table(result.rejected, rejects)
    manifest.outputs = [str(out), str(rejects)]
    manifest.args["endpoint"] = {**manifest.args["endpoint"], "base_url": ep.config.base_url, "model": ep.model}
    manifest.rows_in, manifest.rows_out = table.num_rows, result.kept.num_rows
    manifest.count_rejects(result.rejected_by_reason().elements())
    manifest.stats = result.stats
    manifest.write(out)
    print_counts(f"{NAME} ({generated} rewrites)", table.num_rows + generated, result.kept.num_rows, result.rejected_by_reason())
