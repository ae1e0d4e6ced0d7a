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
    from ..report import build_report, load_report_config, millions, write_report

    config = load_report_config(recipe, tokenizer=tokenizer)
    report = build_report(input, config)
    for path in write_report(report, out):
        typer.echo(path)
    t = report["totals"]
    console.print(
        f"report: {t['conversations']:,} conversations, {millions(t['total_tokens'])}M tokens "
        f"({millions(t['output_tokens'])}M output, {millions(t['input_tokens'])}M input), "
        f"{len(report['funnel'])} stages in the funnel"
    )
