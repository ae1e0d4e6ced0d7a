"""The ``meta`` column is a JSON object in a string; stages add their keys to it."""
from __future__ import annotations

import json


def load_meta(meta: str | None) -> dict:
    if not meta:
        return {}
    try:
        value = json.loads(meta)
    except ValueError:
        return {"_unparsed": meta}
    return value if isinstance(value, dict) else {"_value": value}


def update_meta(meta: str | None, **fields) -> str:
    """Return ``meta`` with ``fields`` merged in (later stages overwrite their own keys)."""
    value = load_meta(meta)
    value.update(fields)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
