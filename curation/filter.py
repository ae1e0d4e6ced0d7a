"""Filter stage: drop conversations with empty turns, malformed turns or refusals.

Every dropped row gets one reason (``empty``, ``malformed`` or ``refusal``) and a detail
naming the turn and the evidence, e.g. ``turn 3 (assistant): unclosed <tool_call>``. The
first problem found decides the reason; checks run in the order empty, malformed, refusal.

Speed comes from doing the expensive text scans once, vectorised, with Arrow's RE2 kernels
over all contents: only turns that contain a suspicious character sequence (a ``<``-tag of
interest, ``{{``, a control token, a replacement character) or a refusal cue in their
opening reach the per-turn Python checks.
"""
from __future__ import annotations

import json
import re
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .io import make_rejects
from .meta import load_meta
from .refusal import DEFAULT_THRESHOLD, OPENING_CHARS, TAIL_CHARS, prefilter_pattern, refusal_score
from .stage import StageResult

STAGE = "filter"

Check = Literal[
    "empty_turn", "no_assistant", "missing_reply",
    "role_order", "not_text", "tags", "tool_calls", "control_tokens", "placeholders", "length_truncated", "encoding",
    "refusal",
]
ALL_CHECKS: tuple[str, ...] = Check.__args__  # type: ignore[attr-defined]
HERMES_REASONING_TAGS = (
    "SCRATCHPAD", "REASONING", "INNER_MONOLOGUE", "PLAN", "EXECUTION", "REFLECTION",
    "THINKING", "SOLUTION", "EXPLANATION", "UNIT_TEST",
)
TOOL_TAGS = ("tools", "tool_call", "tool_response")


class FilterConfig(BaseModel):
    """Settings of `curate filter` (recipe section ``filter``)."""

    model_config = ConfigDict(extra="forbid")
    checks: list[Check] = Field(
        default_factory=lambda: list(ALL_CHECKS),
        description="Checks to run. empty: empty_turn, no_assistant, missing_reply. malformed: role_order, "
        "not_text, tags, tool_calls, control_tokens, placeholders, length_truncated, encoding. refusal: refusal.",
    )
    refusal_threshold: float = Field(
        DEFAULT_THRESHOLD, ge=0.0, le=1.0,
        description="Refusal score at or above which an assistant turn counts as a refusal (0.5 = one strong cue).",
    )
    roleplay_needs_ai_evidence: bool = Field(
        True,
        description="In role-play rows (category roleplay, or a system prompt that sets up a character) a refusal "
        "also needs out-of-character evidence (AI self-reference, policy, vendor, disclaimer): characters apologise.",
    )
    reasoning_tags: list[str] = Field(
        default_factory=lambda: list(HERMES_REASONING_TAGS),
        description="Tags that must be balanced in every turn besides <tools>, <tool_call>, <tool_response>.",
    )
    control_pattern: str = Field(
        r"<\|[A-Za-z0-9_]{1,40}\|>",
        description="RE2 regex for chat-template control tokens (<|im_start|>, <|eot_id|>, ...) that corrupt packing.",
    )
    extra_control_sequences: list[str] = Field(
        default_factory=list,
        description='Literal tokens to treat as control tokens too, e.g. ["</s>", "[INST]"] for a Llama-2 template.',
    )

    @field_validator("control_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
            pc.match_substring_regex(pa.array([""]), value)
        except (re.error, pa.ArrowInvalid) as exc:
            raise ValueError(f"not a valid (RE2) regular expression: {exc}") from None
        return value


# ----------------------------------------------------------------------------- patterns

_PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z_][\w.\-]*\s*\}\}")
# Content that is code or markup, where {{ x }} is template syntax, not a hole.
_CODE_HINT = re.compile(r"(?m)^\s*(?:import |from \S+ import|def |class |function |const |let |var |export |#include|@Component)|\{%|</?[A-Za-z][\w-]*[ >]|\bv-(?:if|for|bind)\b|\*ngFor|\$\{")
_CODE_SPAN = re.compile(r"```.*?(?:```|$)|`[^`\n]*`", re.S)
# U+FFFD, C0 controls other than tab/newline/return, and UTF-8 read as cp1252/latin-1.
_BAD_ENCODING = re.compile("\ufffd|[\x00-\x08\x0b\x0c\x0e-\x1f]|â€[\x80-\xbf™œ\x9d˜“”¦¢]|Ã[\x80-\xbf]")
_BAD_ENCODING_RE2 = "\ufffd|[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f]|â€[\\x{80}-\\x{bf}™œ\\x{9d}˜“”¦¢]|Ã[\\x{80}-\\x{bf}]"
_TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)
_TOOLS_BLOCK = re.compile(r"<tools>(.*?)</tools>", re.S)
_NAME_FIELD = re.compile(r'"name"\s*:\s*"([^"]+)"')
_ROLEPLAY_SETUP = re.compile(
    r"role-?play|in character|stay in character|you are playing|play the (?:role|part) of|pretend (?:to be|you are)"
    r"|you will (?:act|play) as|act as (?:a|an|the) (?!assistant)", re.I)
# Content that is a serialized message/answer object instead of text (arena_hard style).
_OBJECT_KEYS = {"content", "turns", "answer", "role", "text", "message", "choices", "index"}


def _tag_pattern(tags: list[str]) -> re.Pattern:
    return re.compile(r"<(/?)(" + "|".join(re.escape(t) for t in tags) + r")>")


def _looks_like_object(content: str) -> bool:
    s = content.strip()
    if not (s.startswith("{") and s.endswith("}")):
        return False
    try:
        value = json.loads(s)
    except ValueError:
        try:
            import ast

            value = ast.literal_eval(s)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return False
    return isinstance(value, dict) and bool(value) and set(value) <= _OBJECT_KEYS


def _declared_tools(system: str) -> set[str] | None:
    """Tool names of the system prompt's <tools> block(s); None when there is no non-empty block."""
    names: set[str] = set()
    found = False
    for block in _TOOLS_BLOCK.findall(system):
        if not block.strip():
            continue  # the preamble's "inside <tools></tools>"
        found = True
        items = []
        try:
            value = json.loads(block)
            items = value if isinstance(value, list) else [value]
        except ValueError:
            for line in block.splitlines():
                try:
                    items.append(json.loads(line))
                except ValueError:
                    names.update(_NAME_FIELD.findall(line))
        for item in items:
            if isinstance(item, dict):
                fn = item.get("function") if isinstance(item.get("function"), dict) else item
                if isinstance(fn.get("name"), str):
                    names.add(fn["name"])
    return names if found else None


def _check_tags(content: str, pattern: re.Pattern) -> str | None:
    """None if the tags nest and close properly, else what is wrong."""
    stack: list[str] = []
    for m in pattern.finditer(content):
        closing, name = m.group(1), m.group(2)
        if not closing:
            stack.append(name)
        elif not stack:
            return f"</{name}> without an opening tag"
        elif stack[-1] != name:
            return f"</{name}> closes <{stack[-1]}>"
        else:
            stack.pop()
    if stack:
        return f"unclosed <{stack[-1]}>"
    return None


def _check_tool_calls(content: str, declared: set[str] | None) -> str | None:
    for body in _TOOL_CALL.findall(content):
        try:
            call = json.loads(body)
        except ValueError:
            return f"<tool_call> body is not JSON: {body.strip()[:60]!r}"
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"]:
            return f"<tool_call> without a name: {body.strip()[:60]!r}"
        if not isinstance(call.get("arguments"), dict):
            return f"<tool_call> {call['name']!r} without an arguments object"
        if declared is not None and call["name"] not in declared:
            return f"<tool_call> names {call['name']!r}, not declared in <tools>"
    return None


# ----------------------------------------------------------------------------- the core

class _Scanner:
    """Compiled patterns of one config: built once per call, never global."""

    def __init__(self, config: FilterConfig):
        self.config = config
        self.enabled = set(config.checks)
        self.tag_pattern = _tag_pattern(list(TOOL_TAGS) + list(config.reasoning_tags))
        control = config.control_pattern
        if config.extra_control_sequences:
            control = "|".join([control] + [re.escape(t) for t in config.extra_control_sequences])
        self.control_re2 = control
        self.control = re.compile(control)
        tags = "|".join(re.escape(t) for t in list(TOOL_TAGS) + list(config.reasoning_tags))
        parts = []
        if {"tags", "tool_calls"} & self.enabled:
            parts.append(f"</?(?:{tags})>")
        if "control_tokens" in self.enabled:
            parts.append(control)
        if "placeholders" in self.enabled:
            parts.append(r"\{\{")
        if "encoding" in self.enabled:
            parts.append(_BAD_ENCODING_RE2)
        if "not_text" in self.enabled:
            parts.append(r"^\s*\{")
        self.suspicious_re2 = "|".join(f"(?:{p})" for p in parts)


def _flagged(contents: pa.Array, pattern: str, ignore_case: bool = False) -> np.ndarray:
    if not pattern or len(contents) == 0:
        return np.zeros(len(contents), dtype=bool)
    hits = pc.match_substring_regex(contents, pattern, ignore_case=ignore_case)
    return hits.fill_null(False).to_numpy(zero_copy_only=False)


def _refusal_candidates(contents: pa.Array, is_assistant: np.ndarray) -> np.ndarray:
    """Assistant turns whose opening or closing holds any refusal cue (RE2 superset pre-check)."""
    if not is_assistant.any():
        return np.zeros(len(contents), dtype=bool)
    cue = prefilter_pattern()
    head = pc.utf8_slice_codeunits(contents, 0, OPENING_CHARS)
    tail = pc.utf8_slice_codeunits(contents, -TAIL_CHARS)
    hit = _flagged(head, cue, ignore_case=True) | _flagged(tail, cue, ignore_case=True)
    return hit & is_assistant


def _row_problem(
    messages: list[dict], meta: str | None, category: str | None, flags: set[int], refusal_flags: set[int],
    scanner: _Scanner,
) -> tuple[str, str] | None:
    """(reason, detail) of the first problem of one conversation, or None."""
    on = scanner.enabled
    cfg = scanner.config
    # --- empty
    for i, m in enumerate(messages):
        if m is None:
            return "malformed", f"turn {i}: null message"
        content = m["content"]
        if content is None:
            if "not_text" in on:
                return "malformed", f"turn {i} ({m['role']}): content is null, not text"
            continue
        if "empty_turn" in on and (not content or content.isspace()):
            return "empty", f"turn {i} ({m['role']}): empty content"
    roles = [m["role"] for m in messages]
    if "no_assistant" in on and "assistant" not in roles:
        return "empty", "no assistant turn" if messages else "no turns at all"
    if "missing_reply" in on and roles and roles[-1] in ("user", "tool"):
        return "empty", f"turn {len(roles) - 1} ({roles[-1]}): conversation ends without the assistant's reply"
    # --- malformed
    if "length_truncated" in on and meta and "length_truncated" in meta:
        cut = load_meta(meta).get("length_truncated")
        if cut:
            turns = cut if isinstance(cut, list) else [cut]
            return "malformed", f"turn {turns[0]}: reply stopped at the generator's length limit (length_truncated)"
    if "role_order" in on:
        problem = _role_problem(messages, roles)
        if problem:
            return "malformed", problem
    declared: set[str] | None = None
    if flags:
        if "tool_calls" in on and roles[0] == "system" and "<tools>" in (messages[0]["content"] or ""):
            declared = _declared_tools(messages[0]["content"])
        for i in sorted(flags):
            problem = _content_problem(messages[i], declared, scanner)
            if problem:
                return "malformed", f"turn {i} ({roles[i]}): {problem}"
    # --- refusal
    if refusal_flags:
        for i in sorted(refusal_flags):
            score, evidence = refusal_score(messages[i]["content"])
            if score < cfg.refusal_threshold:
                continue
            in_character = not any(e.split(":", 1)[0] in _OUT_OF_CHARACTER for e in evidence)
            if in_character and cfg.roleplay_needs_ai_evidence and _is_roleplay(messages, category):
                continue
            return "refusal", f"turn {i} (assistant): score {score:.2f}: " + ", ".join(evidence[:6])
    return None


_OUT_OF_CHARACTER = {"ai_self_reference", "policy", "vendor", "disclaimer"}


def _is_roleplay(messages: list[dict], category: str | None) -> bool:
    if category == "roleplay":
        return True
    for m in messages[:2]:
        if m["role"] in ("system", "user") and m["content"] and _ROLEPLAY_SETUP.search(m["content"][:2000]):
            return True
    return False


def _role_problem(messages: list[dict], roles: list[str]) -> str | None:
    calls_left = 0
    prev = None
    for i, role in enumerate(roles):
        if role == "system":
            if i != 0:
                return f"turn {i} (system): a system turn only comes first"
        elif role == "user":
            if prev not in (None, "system", "assistant"):
                return f"turn {i} (user): follows a {prev} turn (user and assistant alternate; the assistant answers a tool result)"
        elif role == "assistant":
            if prev not in ("user", "tool"):
                return f"turn {i} (assistant): follows {'nothing' if prev is None else 'another assistant turn' if prev == 'assistant' else 'a ' + prev + ' turn'}"
            calls_left = messages[i]["content"].count("<tool_call>") if messages[i]["content"] else 0
        elif role == "tool":
            if prev not in ("assistant", "tool") or calls_left == 0:
                what = "an assistant turn without a <tool_call>" if prev == "assistant" else (
                    "more tool turns than calls" if prev == "tool" else f"a {prev or 'missing'} turn")
                return f"turn {i} (tool): a tool result after {what}"
            calls_left -= 1
        else:
            return f"turn {i}: unknown role {role!r}"
        prev = role
    return None


def _content_problem(message: dict, declared: set[str] | None, scanner: _Scanner) -> str | None:
    content = message["content"]
    on = scanner.enabled
    if "not_text" in on and content.lstrip().startswith("{") and _looks_like_object(content):
        return f"content is a serialized object, not text: {content.strip()[:60]!r}"
    if "control_tokens" in on:
        m = scanner.control.search(content)
        if m:
            return f"chat-template control token {m.group(0)!r} inside content"
    if "tags" in on:
        problem = _check_tags(content, scanner.tag_pattern)
        if problem:
            return problem
    if "tool_calls" in on and message["role"] == "assistant" and "<tool_call>" in content:
        problem = _check_tool_calls(content, declared)
        if problem:
            return problem
    if "placeholders" in on and "{{" in content and not _CODE_HINT.search(content):
        m = _PLACEHOLDER.search(_CODE_SPAN.sub(" ", content))
        if m:
            return f"unfilled template placeholder {m.group(0)!r}"
    if "encoding" in on:
        m = _BAD_ENCODING.search(content)
        if m:
            return f"broken encoding {m.group(0)!r} at char {m.start()}"
    return None


_ROLE_CODES = pa.array(["system", "user", "assistant", "tool"])
SYSTEM, USER, ASSISTANT, TOOL = 0, 1, 2, 3


def _candidate_rows(
    table: pa.Table, offsets: np.ndarray, contents: pa.Array, roles: pa.Array, flagged_turns: np.ndarray
) -> np.ndarray:
    """Rows that may have a problem, found with array operations; the rest are clean for sure.

    A superset of every check: empty or whitespace turns, a role out of order, any tool turn
    (the call bookkeeping is left to Python), a row with no assistant turn or ending on a user
    or tool turn, a length_truncated mark in meta, and rows with flagged turns.
    """
    n = table.num_rows
    lengths = np.diff(offsets)
    codes = pc.index_in(roles, value_set=_ROLE_CODES).fill_null(-1).to_numpy(zero_copy_only=False)
    row_of_turn = np.repeat(np.arange(n), lengths)
    first = np.zeros(len(codes), dtype=bool)
    first[offsets[:-1][lengths > 0]] = True
    prev = np.empty_like(codes)
    if len(codes):
        prev[0] = -1
        prev[1:] = codes[:-1]
    prev[first] = -1
    bad = (codes < 0) | (codes == TOOL)
    bad |= (codes == SYSTEM) & ~first
    bad |= (codes == USER) & ~np.isin(prev, (-1, SYSTEM, ASSISTANT))
    bad |= (codes == ASSISTANT) & ~np.isin(prev, (USER, TOOL))
    blank = pc.or_kleene(pc.equal(pc.utf8_length(contents), 0), pc.utf8_is_space(contents))
    bad |= blank.fill_null(True).to_numpy(zero_copy_only=False)
    bad |= flagged_turns
    row_bad = np.zeros(n, dtype=bool)
    row_bad[row_of_turn[bad]] = True
    row_bad |= lengths == 0
    assistants = np.bincount(row_of_turn, weights=(codes == ASSISTANT), minlength=n)
    row_bad |= assistants == 0
    nonempty = lengths > 0
    last = np.full(n, -1)
    last[nonempty] = codes[offsets[1:][nonempty] - 1]
    row_bad |= (last == USER) | (last == TOOL)
    marked = pc.match_substring(table.column("meta"), "length_truncated").fill_null(False)
    row_bad |= marked.to_numpy(zero_copy_only=False)
    return np.flatnonzero(row_bad)


def filter_table(table: pa.Table, config: FilterConfig | None = None) -> StageResult:
    """Split ``table`` into kept rows and rejects (reason empty, malformed or refusal, with detail)."""
    config = config or FilterConfig()
    scanner = _Scanner(config)
    n = table.num_rows
    messages_col = table.column("messages").combine_chunks() if n else pa.array([], table.schema.field("messages").type)
    flat = messages_col.flatten()
    offsets = messages_col.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    contents = flat.field("content")
    roles = flat.field("role")
    suspicious = _flagged(contents, scanner.suspicious_re2)
    refusal_hits = np.zeros(len(contents), dtype=bool)
    if "refusal" in scanner.enabled:
        is_assistant = pc.equal(roles, "assistant").fill_null(False).to_numpy(zero_copy_only=False)
        refusal_hits = _refusal_candidates(contents, is_assistant)
    candidates = _candidate_rows(table, offsets, contents, roles, suspicious | refusal_hits)

    row_messages = messages_col.take(pa.array(candidates, pa.int64())).to_pylist()
    metas = table.column("meta").take(pa.array(candidates, pa.int64())).to_pylist()
    categories = table.column("category").take(pa.array(candidates, pa.int64())).to_pylist()
    reject_rows: list[int] = []
    reasons: list[str] = []
    details: list[str] = []
    for k, r in enumerate(candidates.tolist()):
        lo, hi = offsets[r], offsets[r + 1]
        flags = {int(t - lo) for t in np.flatnonzero(suspicious[lo:hi]) + lo} if suspicious[lo:hi].any() else set()
        refusals = {int(t) for t in np.flatnonzero(refusal_hits[lo:hi])} if refusal_hits[lo:hi].any() else set()
        problem = _row_problem(row_messages[k] or [], metas[k], categories[k], flags, refusals, scanner)
        if problem is not None:
            reject_rows.append(r)
            reasons.append(problem[0])
            details.append(problem[1])
    keep_mask = np.ones(n, dtype=bool)
    keep_mask[reject_rows] = False
    kept = table.filter(pa.array(keep_mask))
    rejected = make_rejects(table.take(pa.array(reject_rows, pa.int64())), STAGE, reasons, details)
    by_reason: dict[str, int] = {}
    for reason in reasons:
        by_reason[reason] = by_reason.get(reason, 0) + 1
    stats = {
        "checks": list(config.checks),
        "refusal_threshold": config.refusal_threshold,
        "turns_scanned": int(len(contents)),
        "turns_flagged_for_content_checks": int(suspicious.sum()),
        "assistant_turns_scored_for_refusal": int(refusal_hits.sum()),
        "rows_checked_in_python": int(len(candidates)),
        "rejected_by_reason": dict(sorted(by_reason.items())),
    }
    return StageResult(kept, rejected, stats)
