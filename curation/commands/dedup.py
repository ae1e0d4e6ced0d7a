from __future__ import annotations

from pathlib import Path

import typer

NAME = "dedup"
ORDER = 50
HELP = "Remove exact and MinHash-LSH near-duplicate conversations, keeping the copy from the strongest generator."


def command(
    src: Path = typer.Argument(..., help="Conversation Parquet to deduplicate."),
    out: Path = typer.Option(..., "--out", help="Conversation Parquet of the survivors."),
    rejects: Path = typer.Option(None, "--rejects", help="Rejects Parquet (default: OUT with .rejects.parquet)."),
    config: Path = typer.Option(None, "--config", help="Recipe YAML; its `dedup` section sets the defaults below."),
    key: str = typer.Option(None, "--key", help="prompt (system + user turns) or conversation (all turns). (default prompt)"),
    threshold: float = typer.Option(None, "--threshold", help="Jaccard threshold of near duplicates. (default 0.8)"),
    num_perm: int = typer.Option(None, "--num-perm", help="MinHash permutations. (default 128)"),
    ngram: int = typer.Option(None, "--ngram", help="Words per shingle. (default 5)"),
    priority: str = typer.Option(None, "--priority", help="Generators, strongest first, comma-separated: MODEL,MODEL,..."),
    near: bool = typer.Option(None, "--near/--no-near", help="Also remove near duplicates (off: exact only). (default on)"),
    exact_margin: float = typer.Option(None, "--exact-margin", help="Estimates this close to the threshold are checked exactly. (default 0.1)"),
    false_positive_weight: float = typer.Option(None, "--false-positive-weight", help="LSH false-positive weight. (default 0.05)"),
    false_negative_weight: float = typer.Option(None, "--false-negative-weight", help="LSH false-negative weight. (default 0.95)"),
    seed: int = typer.Option(None, "--seed", help="Seed of the MinHash permutations. (default 1)"),
    batch_rows: int = typer.Option(None, "--batch-rows", help="Rows sketched at a time. (default 4096)"),
) -> None:
    from ..console import print_counts
    from ..dedup import DedupConfig, dedup_table
    from ..recipe import stage_config
    from ..stage import default_rejects_path, run_table_stage

    names = [p.strip() for p in priority.split(",") if p.strip()] if priority is not None else None
    cfg = stage_config(config, NAME, DedupConfig, key=key, threshold=threshold, num_perm=num_perm, ngram=ngram,
                       near=near, seed=seed, batch_rows=batch_rows, priority=names)

    rejects = rejects or default_rejects_path(out)
    args = {"src": str(src), "out": str(out), "rejects": str(rejects), "config": str(config) if config else None, **cfg.model_dump()}
    result, manifest = run_table_stage(NAME, lambda table: dedup_table(table, cfg), src, out, rejects, args)
    print_counts(NAME, manifest.rows_in, manifest.rows_out, manifest.rejected_by_reason)
