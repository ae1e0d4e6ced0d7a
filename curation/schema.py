"""The conversation table: the one contract every stage reads and writes.

The pydantic models are the source of truth; the Arrow schemas and the JSON Schema
files under ``schemas/`` are derived from them (``curate schema`` regenerates the files,
and a test fails when they drift).
"""
from __future__ import annotations

from typing import Literal

import pyarrow as pa
import xxhash
from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")

# Table 1 of the Hermes 3 report, in its order: slug -> display name.
CATEGORIES: dict[str, str] = {
    "general": "General Instructions",
    "domain_expert": "Domain Expert",
    "math": "Math",
    "roleplay": "Roleplaying",
    "coding": "Coding",
    "tool_use": "Tool Use, Agentic, and RAG",
    "content_generation": "Content Generation",
    "steering": "Steering and Alignment",
}
# Table 1 proportions, used as the default target mix of the hermes3 recipe.
HERMES3_PROPORTIONS: dict[str, float] = {
    "general": 0.606,
    "domain_expert": 0.128,
    "math": 0.067,
    "roleplay": 0.061,
    "coding": 0.045,
    "tool_use": 0.043,
    "content_generation": 0.030,
    "steering": 0.025,
}
Category = Literal[
    "general", "domain_expert", "math", "roleplay", "coding", "tool_use", "content_generation", "steering"
]


class Message(BaseModel):
    """One turn of a conversation."""

    model_config = ConfigDict(extra="forbid")
    role: Role
    content: str


class Conversation(BaseModel):
    """One row of every stage's Parquet output."""

    model_config = ConfigDict(extra="forbid", title="Conversation")
    id: str = Field(description="The input row's own id, else a stable content hash of the messages.")
    messages: list[Message]
    source: str = Field(description="File or dataset the row came from.")
    generator: str | None = Field(default=None, description="Model that wrote the assistant turns, when known.")
    category: Category | None = Field(default=None, description="One of the eight Table 1 categories.")
    meta: str | None = Field(default=None, description="JSON object: lineage and stage details.")


class Reject(Conversation):
    """A row a stage removed, with why."""

    model_config = ConfigDict(extra="forbid", title="Reject")
    stage: str = Field(description="Stage that removed the row.")
    reason: str = Field(description="Short reason code, e.g. empty, malformed, refusal, near_duplicate.")
    detail: str | None = Field(default=None, description="Where and what: turn index, matched evidence, kept id.")


MESSAGE_TYPE = pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())])
CONVERSATION_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("messages", pa.list_(MESSAGE_TYPE)),
        pa.field("source", pa.string()),
        pa.field("generator", pa.string()),
        pa.field("category", pa.string()),
        pa.field("meta", pa.string()),
    ]
)
REJECT_SCHEMA = CONVERSATION_SCHEMA.append(pa.field("stage", pa.string())).append(
    pa.field("reason", pa.string())
).append(pa.field("detail", pa.string()))
CONVERSATION_COLUMNS = tuple(CONVERSATION_SCHEMA.names)


def conversation_id(messages: list[dict]) -> str:
    """Stable content hash of the messages: same conversation, same id, every run.

    Each field is length-prefixed, so no two different conversations share an encoding."""
    h = xxhash.xxh3_128()
    for m in messages:
        role, content = m["role"].encode("utf-8"), m["content"].encode("utf-8")
        h.update(b"%d:%b%d:" % (len(role), role, len(content)))
        h.update(content)
    return h.hexdigest()


def json_schemas() -> dict[str, dict]:
    """File name -> JSON Schema, as written under ``schemas/``."""
    return {
        "conversation.schema.json": Conversation.model_json_schema(),
        "reject.schema.json": Reject.model_json_schema(),
    }
