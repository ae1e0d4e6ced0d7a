from __future__ import annotations

from pathlib import Path

import typer

NAME = "report"
ORDER = 80
HELP = "Table 1 for your data (proportion and tokens per category), the curation funnel, packing figures and a chart."


def command(
    input: Path = typer.Argument(..., help="A packed directory (curate pack --out) or a conversation Parquet."),
    out: Path = typer.Option(..., "--out", help="Folder for report.md, report.json, report.csv and category_tokens.png."),
    recipe: Path = typer.Option(None, "--recipe", "--config", help="Recipe YAML: `report.targets` (or top-level `targets`)."),
    tokenizer: str = typer.Option(None, "--tokenizer", help="For a conversation Parquet: llama3 or PATH/tokenizer.json (default: the recipe's pack tokenizer, else llama3)."),
) -> None:
    from ..console import console
    from ..manifest import Manifest
    from ..report import build_report, load_report_config, millions, write_report

    config = load_report_config(recipe, tokenizer=tokenizer)
    manifest = Manifest(NAME, {"input": str(input), "out": str(out), **config.model_dump()}, [input])
    report = build_report(input, config)
    paths = write_report(report, out)
    t = report["totals"]
    manifest.outputs = [str(p) for p in paths]
    manifest.rows_in = manifest.rows_out = t["conversations"]
    manifest.stats = {"totals": t, "categories": {r["category"]: r["total_tokens"] for r in report["categories"]}}
    manifest.write(out)
    for path in paths:
        typer.echo(path)
    console.print(
        f"report: {t['conversations']:,} conversations, {millions(t['total_tokens'])}M tokens "
        f"({millions(t['output_tokens'])}M output, {millions(t['input_tokens'])}M input), "
        f"{len(report['funnel'])} stages in the funnel"
    )
