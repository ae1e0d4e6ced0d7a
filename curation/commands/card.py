from __future__ import annotations

from pathlib import Path

import typer

NAME = "card"
ORDER = 90
HELP = "Write a Hugging Face dataset card (YAML header, composition, sources, curation steps, packing) from a report."


def command(
    report_dir: Path = typer.Argument(..., help="Folder written by `curate report`."),
    out: Path = typer.Option(..., "--out", help="Card to write, e.g. data_cards/NAME.md (publish it as README.md beside the shards)."),
    recipe: Path = typer.Option(None, "--recipe", "--config", help="Recipe YAML with a `card` section."),
    pretty_name: str = typer.Option(None, "--pretty-name", help="Title of the card (default: the card file's name)."),
    license: str = typer.Option(None, "--license", help="Licence id (default: other)."),
    data_files: str = typer.Option(None, "--data-files", help="Glob of the Arrow shards where the card is published."),
    template: str = typer.Option(None, "--template", help="Card template with $placeholders (default: the packaged one, data_cards/TEMPLATE.md)."),
) -> None:
    from ..card import CardConfig, render_card
    from ..io import write_text_atomic
    from ..recipe import load_stage_config
    from ..report import read_report

    config = load_stage_config(recipe, NAME, CardConfig)
    flags = {"pretty_name": pretty_name, "license": license, "data_files": data_files, "template": template}
    config = config.model_copy(update={k: v for k, v in flags.items() if v is not None})
    report = read_report(report_dir)
    write_text_atomic(out, render_card(report, config, out.stem))
    typer.echo(out)
