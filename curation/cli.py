"""`curate`: one command per stage. Each command lives in ``curation/commands/<name>.py``
and defines ``NAME``, ``ORDER``, ``HELP`` and ``command``; this file only collects them."""
from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from . import __version__, commands
from .errors import CurationError

app = typer.Typer(
    name="curate",
    help="Build Hermes-3-style SFT data: ingest, evolve, respond, filter, dedup, tag, pack, report, card, run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version.")):
    """Hermes-3-style SFT data curation."""


def _register() -> None:
    mods = []
    for info in pkgutil.iter_modules(commands.__path__):
        if info.name.startswith("_"):
            continue
        mods.append(importlib.import_module(f"{commands.__name__}.{info.name}"))
    for mod in sorted(mods, key=lambda m: m.ORDER):
        app.command(mod.NAME, help=mod.HELP)(mod.command)


_register()


def main() -> None:
    try:
        app()
    except CurationError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
