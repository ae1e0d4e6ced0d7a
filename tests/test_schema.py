"""The JSON Schema files under schemas/ are generated from the pydantic models and stay in sync."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from curation.schema import CONVERSATION_SCHEMA, REJECT_SCHEMA, Conversation, Reject, conversation_id, json_schemas

ROOT = Path(__file__).resolve().parents[1]


def test_schema_files_match_models():
    for name, schema in json_schemas().items():
        on_disk = json.loads((ROOT / "schemas" / name).read_text())
        assert on_disk == schema, f"schemas/{name} is stale: run `make schema`"


def test_arrow_schema_matches_model_fields():
    assert list(CONVERSATION_SCHEMA.names) == list(Conversation.model_fields)
    assert list(REJECT_SCHEMA.names) == list(Reject.model_fields)
    assert CONVERSATION_SCHEMA.field("messages").type == pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def test_content_hash_is_stable():
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert conversation_id(msgs) == conversation_id([dict(m) for m in msgs])
    assert conversation_id(msgs) != conversation_id(msgs[:1])
