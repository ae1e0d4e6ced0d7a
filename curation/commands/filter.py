from __future__ import annotations

from pathlib import Path

import typer

NAME = "filter"
ORDER = 40
HELP = "Drop conversations with empty turns, malformed turns (roles, tags, tool calls, control tokens, placeholders, encoding) or refusals."


def command(
    src: Path = typer.Argument(..., help="Conversation Parquet to filter."),
    out: Path = typer.Option(..., "--out", help="Parquet of the kept rows."),
    rejects: Path = typer.Option(None, "--rejects", help="Rejects Parquet (default: OUT with .rejects.parquet)."),
    config: Path = typer.Option(None, "--config", help="Recipe YAML; its `filter` section sets the checks and thresholds."),
    checks: str = typer.Option(None, "--checks", help="Comma-separated checks to run (default: all; see the recipe docs)."),
    refusal_threshold: float = typer.Option(None, "--refusal-threshold", help="Refusal score at or above which a reply is a refusal (default 0.5)."),
) -> None:
    from ..console import print_counts
    from ..filter import FilterConfig, filter_table
    from ..recipe import stage_config
    from ..stage import default_rejects_path, run_table_stage

    split = [c.strip() for c in checks.split(",") if c.strip()] if checks is not None else None
    cfg = stage_config(config, NAME, FilterConfig, checks=split, refusal_threshold=refusal_threshold)
    rejects = rejects or default_rejects_path(out)
    args = {"src": str(src), "out": str(out), "rejects": str(rejects), "config": str(config) if config else None, **cfg.model_dump()}
    result, manifest = run_table_stage(NAME, lambda table: filter_table(table, cfg), src, out, rejects, args)
    print_counts(NAME, manifest.rows_in, manifest.rows_out, manifest.rejected_by_reason)
