"""Hermes ChatML rendering with loss labels, one pass per conversation.

``<|begin_of_text|>`` then per message ``<|im_start|>{role}\\n{content}<|im_end|>\\n``.
Labels keep the token id on the assistant content and its ``<|im_end|>`` and are -100
elsewhere (system, user and tool turns, every header, the newline after ``<|im_end|>``).
Each message's content is encoded on its own, as ordinary text, so a piece boundary is
always a token boundary: the loss mask is exact and decoding a sample gives back the
rendered text byte for byte.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .tokenizer import BOS, IM_END, IM_START, Tokenizer

IGNORE = -100
TRAINED_ROLE = "assistant"


class ChatML:
    """The fixed token pieces of the template for one tokenizer, encoded once."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.bos = tokenizer.special(BOS)
        self.im_start = tokenizer.special(IM_START)
        self.im_end = tokenizer.special(IM_END)
        self.newline = tokenizer.encode_ordinary("\n")
        self._headers: dict[str, list[int]] = {}

    def header(self, role: str) -> list[int]:
        ids = self._headers.get(role)
        if ids is None:
            ids = self._headers[role] = [self.im_start, *self.tokenizer.encode_ordinary(f"{role}\n")]
        return ids

    def assemble(self, roles: list[str], contents: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Concatenate encoded contents into (input_ids, labels, message_ends).

        ``message_ends[i]`` is the token offset just after message ``i`` (after its newline).
        """
        ids: list[int] = [self.bos]
        labels: list[int] = [IGNORE]
        ends = np.empty(len(roles), dtype=np.int64)
        trailer = [self.im_end, *self.newline]
        masked_trailer = [IGNORE] * len(trailer)
        for i, (role, content) in enumerate(zip(roles, contents)):
            head = self.header(role)
            ids += head
            ids += content
            ids += trailer
            labels += [IGNORE] * len(head)
            if role == TRAINED_ROLE:
                labels += content
                labels.append(self.im_end)
                labels += masked_trailer[1:]
            else:
                labels += [IGNORE] * len(content)
                labels += masked_trailer
            ends[i] = len(ids)
        return np.asarray(ids, dtype=np.int32), np.asarray(labels, dtype=np.int32), ends


def render(messages: list[dict], tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """One conversation -> (input_ids, labels) as int32 arrays, labels -100 where masked."""
    chatml = ChatML(tokenizer)
    roles = [m["role"] for m in messages]
    contents = tokenizer.encode_ordinary_batch([m["content"] for m in messages]) if messages else []
    ids, labels, _ = chatml.assemble(roles, contents)
    return ids, labels


@dataclass
class Tokenized:
    """A conversation table rendered: per row, ids, labels and each message's end offset."""

    input_ids: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    message_ends: list[np.ndarray] = field(default_factory=list)
    roles: list[list[str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))


def _encode_unique(texts: list[str], tokenizer: Tokenizer, memo: dict[str, list[int] | None]) -> list[list[int]]:
    """Encode each distinct text once: shared system prompts and prompts answered by many models.

    ``memo`` holds every text seen more than once in the table (value None until encoded),
    so only repeated texts stay in memory.
    """
    todo = [t for t in dict.fromkeys(texts) if memo.get(t, None) is None]
    fresh = dict(zip(todo, tokenizer.encode_ordinary_batch(todo)))
    for t, ids in fresh.items():
        if t in memo:
            memo[t] = ids
    return [fresh[t] if t in fresh else memo[t] for t in texts]


def tokenize_table(table: pa.Table, tokenizer: Tokenizer, batch_rows: int = 2048) -> Tokenized:
    """Render every row of a conversation table, encoding contents in batches, each distinct text once."""
    chatml = ChatML(tokenizer)
    out = Tokenized()
    messages = table.column("messages")
    contents = pc.struct_field(pc.list_flatten(messages), "content")
    counts = pc.value_counts(contents)
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1)).to_pylist()
    memo: dict[str, list[int] | None] = dict.fromkeys(t for t in repeated if t)
    for start in range(0, table.num_rows, batch_rows):
        chunk = messages.slice(start, batch_rows).combine_chunks()
        flat = chunk.flatten() if len(chunk) else pa.StructArray.from_arrays([pa.array([], pa.string())] * 2, ["role", "content"])
        offsets = chunk.offsets.to_numpy() - chunk.offsets[0].as_py() if len(chunk) else np.zeros(1, np.int64)
        roles = flat.field("role").to_pylist()
        encoded = _encode_unique([t or "" for t in flat.field("content").to_pylist()], tokenizer, memo)
        for row in range(len(chunk)):
            lo, hi = int(offsets[row]), int(offsets[row + 1])
            ids, labels, ends = chatml.assemble(roles[lo:hi], encoded[lo:hi])
            out.input_ids.append(ids)
            out.labels.append(labels)
            out.message_ends.append(ends)
            out.roles.append(roles[lo:hi])
    return out
