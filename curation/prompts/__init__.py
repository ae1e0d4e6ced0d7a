"""The prompts the generating stages send, as editable text files beside this module.

Placeholders are ``{name}``; they are filled with plain string replacement, so braces in
an instruction (code, JSON) are never mistaken for placeholders.
"""
from __future__ import annotations

import re
from importlib.resources import files


def load_prompt(name: str) -> str:
    """The text of ``prompts/<name>.txt``."""
    return files(__name__).joinpath(f"{name}.txt").read_text(encoding="utf-8")


def fill(template: str, **values: str) -> str:
    """Replace each ``{key}`` in one pass, so a value that contains ``{other}`` stays as it is."""
    pattern = re.compile("|".join(re.escape("{" + key + "}") for key in values))
    return pattern.sub(lambda m: values[m.group(0)[1:-1]], template)
