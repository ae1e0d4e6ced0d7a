from __future__ import annotations

from pathlib import Path

import typer

NAME = "respond"
ORDER = 30
HELP = "Write assistant replies through an OpenAI-compatible endpoint; for multi-turn, the model also plays the user."


def command(
    src: Path = typer.Argument(..., help="Conversation Parquet; rows whose last turn is a user (or tool) turn are answered."),
    out: Path = typer.Option(..., "--out", help="Conversation Parquet with the replies."),
    rejects: Path = typer.Option(None, "--rejects", help="Rejects Parquet (default: OUT with .rejects.parquet)."),
    config: Path = typer.Option(None, "--config", help="Recipe YAML; its `respond` and `endpoint` sections set the defaults."),
    turns: str = typer.Option(None, "--turns", help="Assistant turns per row: N or MIN-MAX (drawn per row). [default: 1]"),
    system_prompts: Path = typer.Option(None, "--system-prompts", help="File of system prompts (blank-line separated, or JSONL)."),
    seed: int = typer.Option(None, "--seed", help="Seed of the per-row draws and request seeds. [default: 0]"),
    max_tokens: int = typer.Option(None, "--max-tokens", help="Token limit of a reply. [default: 2048; 160 on the local model]"),
    endpoint: str = typer.Option(None, "--endpoint", help="local, or the base URL of an OpenAI-compatible server."),
    model: str = typer.Option(None, "--model", help="Model name on the endpoint."),
    journal: Path = typer.Option(None, "--journal", help="Request journal for resuming (default: OUT with .journal.jsonl)."),
) -> None:
    from ..client import EndpointConfig
    from ..console import print_counts
    from ..endpoint import apply_flags, journal_path, open_endpoint
    from ..io import read_conversations
    from ..recipe import load_stage_config, merge_flags
    from ..respond import RespondConfig, load_system_prompts, respond_table
    from ..stage import default_rejects_path, run_table_stage

    flags = {"turns": turns, "seed": seed, "max_tokens": max_tokens,
             "system_prompts": str(system_prompts) if system_prompts else None}
    cfg = merge_flags(load_stage_config(config, NAME, RespondConfig), flags)
    endpoint_cfg = apply_flags(load_stage_config(config, "endpoint", EndpointConfig), endpoint, model)
    prompts = load_system_prompts(cfg.system_prompts) if cfg.system_prompts else None
    read_conversations(src)  # a bad input stops here, before a server is started
    rejects = rejects or default_rejects_path(out)
    journal = journal or journal_path(out)

    args = {"src": str(src), "out": str(out), "rejects": str(rejects), "journal": str(journal),
            "config": str(config) if config else None, **cfg.model_dump(), "endpoint": endpoint_cfg.model_dump()}
    with open_endpoint(endpoint_cfg) as ep:
        _, manifest = run_table_stage(
            NAME, lambda table: respond_table(table, cfg, ep, prompts, journal=journal), src, out, rejects, args
        )
    print_counts(NAME, manifest.rows_in, manifest.rows_out, manifest.rejected_by_reason)
