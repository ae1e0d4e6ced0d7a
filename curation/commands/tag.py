from __future__ import annotations

from pathlib import Path

import typer

NAME = "tag"
ORDER = 60
HELP = "Give every conversation one of the eight Table 1 categories (offline rules + model, or an LLM); declared categories are kept."


def command(
    src: Path = typer.Argument(..., help="Conversation Parquet to tag."),
    out: Path = typer.Option(..., "--out", help="Tagged conversation Parquet."),
    rejects: Path = typer.Option(None, "--rejects", help="Rejects Parquet (always empty: tagging keeps every row)."),
    config: Path = typer.Option(None, "--config", help="Recipe YAML; its `tag` section sets the defaults below, `endpoint` the LLM."),
    method: str = typer.Option(None, "--method", help="auto (offline, CPU), llm (ask the endpoint for every row) or hybrid "
                               "(offline, then the endpoint for the model's unsure rows). [default: auto]"),
    hybrid_below: float = typer.Option(None, "--hybrid-below", help="For --method hybrid: the model confidence under which a row "
                                       "goes to the endpoint. [default: 0.6]"),
    retag_declared: bool = typer.Option(None, "--retag-declared/--keep-declared", help="Re-tag rows that already have a category. [default: keep]"),
    max_chars: int = typer.Option(None, "--max-chars", help="Characters of each turn the offline tagger reads. [default: 2000]"),
    llm_max_chars: int = typer.Option(None, "--llm-max-chars", help="Characters of the conversation shown to the LLM. [default: 4000]"),
    llm_temperature: float = typer.Option(None, "--llm-temperature", help="Temperature of the LLM request. [default: 0]"),
    endpoint: str = typer.Option(None, "--endpoint", help="For --method llm/hybrid: `local` or an OpenAI-compatible base URL."),
    model: str = typer.Option(None, "--model", help="For --method llm/hybrid: model name at the endpoint."),
    journal: Path = typer.Option(None, "--journal", help="For --method llm/hybrid: request journal for resuming (default: OUT with .journal.jsonl)."),
) -> None:
    from ..console import print_counts
    from ..recipe import load_stage_config, stage_config
    from ..stage import default_rejects_path, run_table_stage
    from ..tag import TagConfig, tag_table

    cfg = stage_config(config, NAME, TagConfig, method=method, hybrid_below=hybrid_below, retag_declared=retag_declared, max_chars=max_chars,
                       llm_max_chars=llm_max_chars, llm_temperature=llm_temperature)

    rejects = rejects or default_rejects_path(out)
    args = {"src": str(src), "out": str(out), "rejects": str(rejects), "config": str(config) if config else None, **cfg.model_dump()}
    if cfg.method in ("llm", "hybrid"):
        from ..client import EndpointConfig
        from ..endpoint import apply_flags, journal_path, open_endpoint

        ep_cfg = apply_flags(load_stage_config(config, "endpoint", EndpointConfig), endpoint, model)
        journal = journal or journal_path(out)
        args["journal"] = str(journal)
        with open_endpoint(ep_cfg) as ep:
            args["endpoint"] = {"base_url": ep.base_url, "model": ep.model}
            result, manifest = run_table_stage(NAME, lambda table: tag_table(table, cfg, ep, journal), src, out, rejects, args)
    else:
        result, manifest = run_table_stage(NAME, lambda table: tag_table(table, cfg), src, out, rejects, args)
    print_counts(NAME, manifest.rows_in, manifest.rows_out, manifest.rejected_by_reason)
    from ..console import console

    console.print("categories: " + ", ".join(f"{c} {n}" for c, n in result.stats["by_category"].items()), soft_wrap=True)
    console.print("decided by: " + ", ".join(f"{s} {n}" for s, n in result.stats["by_source"].items()), soft_wrap=True)
