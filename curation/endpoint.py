"""Which OpenAI-compatible server a generating stage talks to.

Order of resolution: the recipe's ``endpoint`` section (``base_url``, ``model``,
``api_key_env``), else the environment (``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` /
``OPENAI_MODEL``), else the embedded llama.cpp server. ``base_url: local`` forces the
embedded server. The API key is read from the environment only and never stored.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TypeVar

from pydantic import BaseModel

from .client import Endpoint, EndpointConfig
from .errors import CurationError

M = TypeVar("M", bound=BaseModel)
LOCAL = "local"
OPENAI_URL = "https://api.openai.com/v1"
# The llama.cpp server computes one request at a time and finishes it even after the
# client gave up. Queued requests would time out on a busy machine, be sent again, and
# double the work: so one request in flight, and a patient timeout.
LOCAL_MAX_IN_FLIGHT = 1
LOCAL_TIMEOUT_S = 900.0


def apply_flags(config: EndpointConfig, endpoint: str | None = None, model: str | None = None) -> EndpointConfig:
    """``--endpoint local|URL`` and ``--model M`` override the recipe's endpoint section."""
    update = {}
    if endpoint:
        update["base_url"] = endpoint
    if model:
        update["model"] = model
    return config.model_copy(update=update) if update else config


def _served_model(base_url: str, api_key: str) -> str | None:
    """The first model a server lists (vLLM and llama.cpp serve exactly one)."""
    req = urllib.request.Request(f"{base_url.rstrip('/')}/models")
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            data = json.load(resp).get("data") or []
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return data[0].get("id") if data and isinstance(data[0], dict) else None


def resolve_remote(config: EndpointConfig) -> Endpoint | None:
    """The configured or environment endpoint, or None when the local server should be used."""
    base_url = config.base_url
    if base_url == LOCAL:
        return None
    api_key = os.environ.get(config.api_key_env, "")
    if base_url is None:
        base_url = os.environ.get("OPENAI_BASE_URL")
        if base_url is None and api_key:
            base_url = OPENAI_URL
    if base_url is None:
        return None
    model = config.model or os.environ.get("OPENAI_MODEL") or _served_model(base_url, api_key)
    if not model:
        raise CurationError(
            f"no model for endpoint {base_url}: set `endpoint.model` in the recipe, --model, or OPENAI_MODEL"
        )
    # The openai client refuses an empty key; local servers ignore whatever is sent.
    return Endpoint(base_url=base_url, model=model, api_key=api_key or "unused", config=config)


@contextmanager
def open_endpoint(config: EndpointConfig) -> Iterator[Endpoint]:
    """Yield a ready endpoint; the embedded server, when used, is stopped on exit."""
    remote = resolve_remote(config)
    if remote is not None:
        yield remote
        return
    from .local_server import MODEL_NAME, local_server

    local_config = config.model_copy(
        update={
            "base_url": LOCAL,
            "model": MODEL_NAME,
            "max_in_flight": min(config.max_in_flight, LOCAL_MAX_IN_FLIGHT),
            "timeout_s": max(config.timeout_s, LOCAL_TIMEOUT_S),
        }
    )
    with local_server() as base_url:
        yield Endpoint(base_url=base_url, model=MODEL_NAME, api_key="local", config=local_config)


def request_seed(seed: int, key: str) -> int:
    """A sampling seed per request, fixed by the run's seed and the request's key.

    Same seed, same request, same reply (on servers that honour ``seed``), and a resumed
    run finds its journaled requests again because their parameters did not change.
    """
    import xxhash

    return xxhash.xxh32_intdigest(f"{seed}:{key}".encode("utf-8")) & 0x7FFFFFFF


def journal_path(out: str | os.PathLike) -> Path:
    """Default request journal of a generating stage: ``OUT.journal.jsonl`` beside OUT."""
    p = Path(out)
    return p.with_name(p.stem + ".journal.jsonl")


