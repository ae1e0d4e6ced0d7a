"""Recipes: one YAML file, validated by pydantic, that configures every stage.

YAML is loaded with ``yaml.safe_load`` only. Each stage owns its config model (in its own
module); the recipe nests them under the stage's name, so a recipe key, a CLI flag and a
manifest field are one name for one thing.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import CurationError

M = TypeVar("M", bound=BaseModel)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in string values (recipes point at a
    user's endpoint this way). Unset variables without a default become empty strings."""
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    return value


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise CurationError(f"{p}: no such recipe")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise CurationError(f"{p}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CurationError(f"{p}: a recipe is a mapping of keys, not {type(data).__name__}")
    return expand_env(data)


def validation_message(path: str | Path, exc: ValidationError, prefix: str = "") -> str:
    """One line per problem, each naming the key's path, e.g. ``filter.refusal_threshold``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in ((prefix,) if prefix else ()) + tuple(err["loc"]))
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{loc}: {msg}")
    return f"{path}: " + "; ".join(parts)


def load_stage_config(path: str | Path | None, section: str, model: type[M]) -> M:
    """The ``section`` of a recipe as ``model`` (defaults when no recipe is given)."""
    if path is None:
        return model()
    data = load_yaml(path).get(section) or {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise CurationError(validation_message(path, exc, section)) from None


def merge_flags(config: M, flags: dict) -> M:
    """``config`` with the CLI flags that were given (not None) laid over it, validated again;
    a bad flag value is one line naming the flag."""
    given = {k: v for k, v in flags.items() if v is not None}
    if not given:
        return config
    try:
        return type(config).model_validate({**config.model_dump(), **given})
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(str(x) for x in e['loc']).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        raise CurationError(problems) from None


def stage_config(path: str | Path | None, section: str, model: type[M], **flags) -> M:
    """What a command runs with: the recipe's ``section`` (or defaults), then its flags."""
    return merge_flags(load_stage_config(path, section, model), flags)
