"""Respond: the assistant answers each prompt; for multi-turn rows the model also plays the user.

Every step is one batch of requests over all rows still growing, so the client keeps many
requests in flight. Each request's key and sampling seed depend only on the row id, the
turn index and the run seed, so a killed run replays its journal and sends nothing twice.
"""
from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .client import ChatRequest, Endpoint, chat_many
from .endpoint import request_seed
from .errors import CurationError
from .io import conversations_from_rows, make_rejects
from .meta import update_meta
from .prompts import fill, load_prompt
from .stage import StageResult

STAGE = "respond"
AWAITING_REPLY = ("user", "tool")
_SPEAKER_LABEL = re.compile(r"^\s*(user|human|me)\s*:\s*", re.I)
REMOTE_MAX_TOKENS = 2048
# The embedded 135M model writes about 50 tokens/s on 2 cores: short replies keep the demo quick.
LOCAL_MAX_TOKENS = 160
_TURNS = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


class RespondConfig(BaseModel):
    """Settings of `curate respond` (recipe section `respond`)."""

    model_config = ConfigDict(extra="forbid")
    turns: str = Field("1", description="Assistant turns to write per row: N, or MIN-MAX drawn per row (seeded).")
    system_prompts: str | None = Field(
        None, description="File of system prompts (blank-line separated, or JSONL); one is drawn per row without one."
    )
    seed: int = Field(0, description="Seed of the per-row draws and of the sampling seeds sent with each request.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature.")
    max_tokens: int | None = Field(
        None, ge=8,
        description=f"Token limit of an assistant reply; a reply cut by it is marked. "
        f"[default: {REMOTE_MAX_TOKENS}; {LOCAL_MAX_TOKENS} on the embedded local model]",
    )
    max_follow_up_tokens: int = Field(96, ge=8, description="Token limit of a simulated user follow-up.")
    transcript_chars: int = Field(
        1500, ge=100, description="Characters of each turn shown to the simulated user (keeps the prompt in context)."
    )

    @field_validator("turns")
    @classmethod
    def _turns_range(cls, value: str) -> str:
        parse_turns(value)
        return value.strip()

    def turn_range(self) -> tuple[int, int]:
        return parse_turns(self.turns)

    def reply_tokens(self, endpoint: Endpoint) -> int:
        if self.max_tokens is not None:
            return self.max_tokens
        return LOCAL_MAX_TOKENS if endpoint.config.base_url == "local" else REMOTE_MAX_TOKENS


def parse_turns(value: str) -> tuple[int, int]:
    """'2' -> (2, 2); '1-3' -> (1, 3)."""
    m = _TURNS.match(str(value))
    if not m:
        raise ValueError(f"turns is N or MIN-MAX, e.g. 1-3 (got {value!r})")
    low = int(m.group(1))
    high = int(m.group(2) or low)
    if not 1 <= low <= high <= 32:
        raise ValueError(f"turns needs 1 <= MIN <= MAX <= 32 (got {value!r})")
    return low, high


def load_system_prompts(path: str | Path) -> list[str]:
    """System prompts from a text file (blank-line separated) or JSONL (strings or {"content": ...})."""
    p = Path(path)
    if not p.is_file():
        raise CurationError(f"{p}: no such system prompts file")
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".jsonl":
        prompts = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                raise CurationError(f"{p}:{n}: invalid JSON ({exc})") from None
            if isinstance(value, dict):
                value = value.get("content") or value.get("system") or value.get("system_prompt")
            if not isinstance(value, str):
                raise CurationError(f"{p}:{n}: expected a string or an object with `content`")
            prompts.append(value.strip())
    else:
        prompts = [block.strip() for block in re.split(r"\n\s*\n", text)]
    prompts = [s for s in prompts if s]
    if not prompts:
        raise CurationError(f"{p}: no system prompts in the file")
    return prompts


def transcript(messages: list[dict], max_chars: int) -> str:
    """The conversation as the simulated user reads it (system turns are not shown)."""
    names = {"user": "User", "assistant": "Assistant", "tool": "Tool"}
    parts = []
    for m in messages:
        if m["role"] in names:
            content = m["content"] if len(m["content"]) <= max_chars else m["content"][:max_chars] + " [...]"
            parts.append(f"{names[m['role']]}: {content}")
    return "\n\n".join(parts)


def api_messages(messages: list[dict]) -> list[dict]:
    """The turns as sent: a Hermes ``tool`` turn (``<tool_response>`` text, no tool_call_id)
    goes as a user turn, which every OpenAI-compatible server accepts; the row keeps ``tool``."""
    return [{"role": "user" if m["role"] == "tool" else m["role"], "content": m["content"]} for m in messages]


def _follow_up_text(text: str | None) -> str:
    return _SPEAKER_LABEL.sub("", (text or "").strip()).strip()


class _Row:
    """One conversation growing turn by turn."""

    def __init__(self, row: dict, messages: list[dict], target: int):
        self.row = row
        self.messages = messages
        self.target = target
        self.written = 0
        self.truncated: list[int] = []
        self.failure: tuple[str, str] | None = None
        self.active = True


def respond_table(
    table: pa.Table,
    cfg: RespondConfig,
    endpoint: Endpoint,
    system_prompts: list[str] | None = None,
    journal: Path | None = None,
    progress: bool = True,
) -> StageResult:
    """Every row awaiting a reply is answered (and, for multi-turn, continued); none is lost."""
    low, high = cfg.turn_range()
    rows: list[_Row | dict] = []
    rejected: list[tuple[dict, str, str]] = []
    stats: Counter[str] = Counter()
    for row in table.to_pylist():
        messages = [dict(m) for m in row["messages"] or []]
        if not any(m["role"] == "user" for m in messages):
            rejected.append((row, "no_instruction", "no user turn to answer"))
            continue
        if messages[-1]["role"] not in AWAITING_REPLY:
            rows.append(row)  # already answered: passed through unchanged
            stats["already_answered"] += 1
            continue
        draw = random.Random(f"{cfg.seed}:{row['id']}:respond")
        target = draw.randint(low, high)
        if system_prompts and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": draw.choice(system_prompts)})
            stats["system_prompt_added"] += 1
        rows.append(_Row(row, messages, target))
    growing = [r for r in rows if isinstance(r, _Row)]

    usage: dict = {}
    for _ in range(high):
        active = [r for r in growing if r.active]
        if not active:
            break
        _assistant_step(active, cfg, endpoint, journal, progress, usage)
        continuing = [r for r in active if r.active]
        if continuing:
            _user_step(continuing, cfg, endpoint, journal, progress, usage, stats)

    kept = []
    for r in rows:
        if isinstance(r, dict):
            kept.append(r)
        elif r.failure:
            rejected.append((r.row, *r.failure))
        else:
            extra = {"respond_turns": r.written}
            if r.truncated:
                extra["length_truncated"] = r.truncated
                stats["length_truncated"] += 1
            kept.append({**r.row, "messages": r.messages, "generator": endpoint.model,
                         "meta": update_meta(r.row.get("meta"), **extra)})
            stats["answered"] += 1
    rejected_table = make_rejects(
        conversations_from_rows([r for r, _, _ in rejected]), STAGE,
        [reason for _, reason, _ in rejected], [detail for _, _, detail in rejected],
    )
    return StageResult(
        conversations_from_rows(kept), rejected_table,
        {**dict(sorted(stats.items())), "turns": cfg.turns, "model": endpoint.model, "usage": usage},
    )


def _add_usage(total: dict, usage: dict) -> None:
    for key, value in usage.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value


def _answered(active: list[_Row], requests: list, endpoint, journal, progress, usage: dict):
    """Send one request per active row; a row whose request failed after retries stops with
    `generation_failed`; yield (row, response, turn index) for the others."""
    responses, used = chat_many(requests, endpoint, journal=journal, progress=progress)
    _add_usage(usage, used)
    for r, resp in zip(active, responses):
        turn = len(r.messages)
        if resp.error:
            r.failure, r.active = ("generation_failed", f"turn {turn} ({resp.key}): {resp.error}"), False
            continue
        yield r, resp, turn


def _assistant_step(active: list[_Row], cfg, endpoint, journal, progress, usage) -> None:
    requests = []
    for r in active:
        key = f"{r.row['id']}:respond:{len(r.messages)}"
        params = {"temperature": cfg.temperature, "max_tokens": cfg.reply_tokens(endpoint), "seed": request_seed(cfg.seed, key)}
        requests.append(ChatRequest(key, api_messages(r.messages), params))
    for r, resp, turn in _answered(active, requests, endpoint, journal, progress, usage):
        text = (resp.text or "").strip()
        if not text:
            r.failure, r.active = ("empty_reply", f"turn {turn} ({resp.key}): the model returned no text"), False
            continue
        r.messages.append({"role": "assistant", "content": text})
        r.written += 1
        if resp.finish_reason == "length":
            r.truncated.append(turn)
            r.active = False  # the filter drops the row; continuing it would waste calls
        elif r.written >= r.target:
            r.active = False


def _user_step(active: list[_Row], cfg, endpoint, journal, progress, usage, stats: Counter) -> None:
    requests = []
    for r in active:
        key = f"{r.row['id']}:follow_up:{len(r.messages)}"
        prompt = fill(load_prompt("follow_up"), transcript=transcript(r.messages, cfg.transcript_chars))
        params = {"temperature": cfg.temperature, "max_tokens": cfg.max_follow_up_tokens, "seed": request_seed(cfg.seed, key)}
        requests.append(ChatRequest(key, [{"role": "user", "content": prompt}], params))
    for r, resp, turn in _answered(active, requests, endpoint, journal, progress, usage):
        text = _follow_up_text(resp.text)
        if not text or resp.finish_reason == "length":
            # A missing or cut-off question ends the conversation early rather than spoiling it.
            stats["follow_up_unusable"] += 1
            r.active = False
            continue
        r.messages.append({"role": "user", "content": text})
