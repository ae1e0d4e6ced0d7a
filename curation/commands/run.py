from __future__ import annotations

from pathlib import Path

import typer

NAME = "run"
ORDER = 5
HELP = "Run a recipe's stages in order into runs/NAME/, skipping stages whose inputs and settings are unchanged."


def command(
    recipe: Path = typer.Argument(..., help="Recipe YAML (see recipes/)."),
    start: str = typer.Option(None, "--from", help="First stage to run."),
    stop: str = typer.Option(None, "--to", help="Last stage to run."),
    force: bool = typer.Option(False, "--force", help="Run the stages even when they are up to date."),
) -> None:
    from ..console import console
    from ..pipeline import run_recipe

    run_dir = run_recipe(recipe, start, stop, force, echo=lambda line: console.print(line, soft_wrap=True, highlight=False, markup=False))
    typer.echo(run_dir)
