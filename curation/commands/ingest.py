from __future__ import annotations

from pathlib import Path

import typer

NAME = "ingest"
ORDER = 10
HELP = "Read chat data (JSONL, JSON, Parquet, saved HF datasets; ShareGPT, OpenAI, Alpaca, hh, OASST, QA, prompts) into the conversation table."


def execute(jobs: list, out: Path, rejects: Path, settings: dict, progress=None):
    """Ingest ``jobs`` ([(paths, IngestConfig)]) into OUT and REJECTS with OUT's manifest;
    shared by this command and `curate run`."""
    from ..ingest import ingest_many
    from ..io import write_table
    from ..manifest import Manifest

    result = ingest_many(jobs, progress)
    manifest = Manifest(NAME, settings, list(result.stats["files"]))
    write_table(result.kept, out)
    write_table(result.rejected, rejects)
    manifest.outputs = [str(out), str(rejects)]
    # OASST trees expand to several conversations, so rows in are counted after expansion.
    manifest.rows_in = result.kept.num_rows + result.rejected.num_rows
    manifest.rows_out = result.kept.num_rows
    manifest.count_rejects(result.rejected_by_reason().elements())
    manifest.stats = result.stats
    manifest.write(out)
    return result, manifest


def command(
    src: list[Path] = typer.Argument(..., help="Files or folders to read (folders are read recursively)."),
    out: Path = typer.Option(..., "--out", help="Conversation Parquet to write."),
    rejects: Path = typer.Option(None, "--rejects", help="Rejects Parquet (default: OUT with .rejects.parquet)."),
    format: str = typer.Option("auto", "--format", help="auto|sharegpt|openai|alpaca|hh|oasst|qa|prompt|toolbench|bfcl"),
    source: str = typer.Option(None, "--source", help="Source name for every row (default: folder/file name)."),
    category: str = typer.Option(None, "--category", help="Declared Table 1 category for every row."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first bad record with file:line instead of rejecting it."),
) -> None:
    from ..console import console, print_counts, progress_bar
    from ..ingest import IngestConfig
    from ..stage import default_rejects_path

    rejects = rejects or default_rejects_path(out)
    config = IngestConfig(format=format, source=source, category=category, strict=strict)
    settings = {"src": [str(s) for s in src], "out": str(out), "rejects": str(rejects), **config.model_dump()}
    with progress_bar("ingest", None) as advance:
        result, manifest = execute([(list(src), config)], out, rejects, settings, advance)
    for path, s in result.stats["files"].items():
        bad = sum(s["rejected"].values())
        console.print(f"{path}: {s['format']}, {s['records']} records -> {s['conversations']} conversations, {bad} rejected", soft_wrap=True)
    print_counts(NAME, manifest.rows_in, manifest.rows_out, manifest.rejected_by_reason)
