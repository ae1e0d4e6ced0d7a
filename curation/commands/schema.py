from __future__ import annotations

import json
from pathlib import Path

import typer

NAME = "schema"
ORDER = 100
HELP = "Write the JSON Schemas of the conversation and reject tables (schemas/*.json)."


def command(out: Path = typer.Option(Path("schemas"), "--out", help="Folder for the schema files.")) -> None:
    from ..io import write_text_atomic
    from ..schema import json_schemas

    for name, schema in json_schemas().items():
        write_text_atomic(out / name, json.dumps(schema, indent=2) + "\n")
        typer.echo(out / name)
