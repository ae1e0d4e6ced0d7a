"""Evol-Instruct: rewrite seed instructions into harder or rarer ones, and drop failed rewrites.

Each round, every lineage's latest surviving instruction is rewritten with one operation
drawn at random (seeded by the run seed, the parent's id and the round, so a rerun draws
the same). Five operations go in depth (add constraints, deepen, concretize, increase
reasoning steps, complicate the input) and one in breadth (a new, rarer instruction in the
same domain). A rewrite is then answered once, and the answer is used to judge it.

OUT keeps the whole pool, as WizardLM does: the seeds and the survivors of every round.
A failed rewrite goes to the rejects and its parent is tried again next round with a
freshly drawn operation, so one bad draw does not end a lineage.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import xxhash
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .client import ChatRequest, ChatResponse, Endpoint, chat_many
from .endpoint import request_seed
from .io import conversations_from_rows, make_rejects
from .meta import load_meta, update_meta
from .prompts import fill, load_prompt
from .stage import StageResult

STAGE = "evolve"
IN_DEPTH = ("add_constraints", "deepen", "concretize", "increase_reasoning", "complicate_input")
IN_BREADTH = ("in_breadth",)
OPERATIONS = IN_DEPTH + IN_BREADTH
MARKER_WORDS = (
    "#given prompt#", "#rewritten prompt#", "#created prompt#",
    "given prompt", "rewritten prompt", "created prompt",
    "rewritten version", "rewritten instruction",  # the same scaffolding, paraphrased by small models
)
# Meta keys this stage writes; a child does not inherit its parent's.
OWN_KEYS = ("root_id", "parent_id", "operation", "round", "evolve_model", "evolve_answer")
# English function words: an answer made only of these (and punctuation) says nothing.
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are aren't as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
    during each few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here
    here's hers herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself
    let's me more most mustn't my myself no nor not of off on once only or other ought our ours ourselves out
    over own same shan't she she'd she'll she's should shouldn't so some such than that that's the their
    theirs them themselves then there there's these they they'd they'll they're they've this those through
    to too under until up very was wasn't we we'd we'll we're we've were weren't what what's when when's
    where where's which while who who's whom why why's with won't would wouldn't you you'd you'll you're
    you've your yours yourself yourselves yes ok okay oh well just also""".split()
)
_WORD = re.compile(r"[A-Za-z0-9']+")


class EvolveConfig(BaseModel):
    """Settings of `curate evolve` (recipe section `evolve`)."""

    model_config = ConfigDict(extra="forbid")
    rounds: int = Field(1, ge=1, le=10, description="Evolution rounds; each rewrites every lineage's latest survivor.")
    seed: int = Field(0, description="Seed of the operation draws and of the sampling seeds sent with each request.")
    operations: list[str] = Field(
        list(OPERATIONS), description="Operations to draw from, uniformly: " + ", ".join(OPERATIONS) + "."
    )
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="Sampling temperature of rewrites and answers.")
    max_rewrite_tokens: int = Field(160, ge=8, description="Token limit of a rewrite; a rewrite cut by it is rejected.")
    max_answer_tokens: int = Field(
        128, ge=8, description="Token limit of the answer used to judge a rewrite (128 tokens hold the 80 words the sorry rule reads)."
    )
    sorry_max_words: int = Field(80, ge=0, description="An answer containing 'sorry' with fewer words than this fails.")
    marker_words: list[str] = Field(
        list(MARKER_WORDS), description="Words of the evolving prompts a rewrite must not copy (case-insensitive)."
    )
    check_information_gain: bool = Field(
        False, description="Ask the model whether a rewrite adds anything over its parent (one extra call per rewrite)."
    )

    @field_validator("operations")
    @classmethod
    def _known_operations(cls, value: list[str]) -> list[str]:
        unknown = [op for op in value if op not in OPERATIONS]
        if unknown or not value:
            raise ValueError(f"choose from {', '.join(OPERATIONS)} (got {', '.join(unknown) or 'none'})")
        return list(dict.fromkeys(value))


# ----------------------------------------------------------------------------- pure rules

def choose_operation(seed: int, parent_id: str, round_no: int, operations: list[str]) -> str:
    """The operation of one rewrite: the same for the same seed, parent and round."""
    return random.Random(f"{seed}:{parent_id}:{round_no}").choice(operations)


def child_id(parent_id: str, round_no: int) -> str:
    """A new row's id, fixed by its parent and round (not by the model's text)."""
    return xxhash.xxh3_128_hexdigest(f"{parent_id}\x00evolve\x00{round_no}".encode("utf-8"))


def copied_marker(rewrite: str, markers: list[str]) -> str | None:
    low = rewrite.lower()
    return next((m for m in markers if m.lower() in low), None)


def sorry_and_short(answer: str, max_words: int) -> bool:
    return "sorry" in answer.lower() and len(answer.split()) < max_words


def only_stop_words(answer: str) -> bool:
    """True when nothing but punctuation and stop words remain (an empty answer included)."""
    return all(w.lower() in STOP_WORDS for w in _WORD.findall(answer))


def _normal(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def judged_equal(reply: str) -> bool:
    """The information-gain check's verdict: a reply that starts with 'equal'."""
    words = _WORD.findall(reply.lower())
    return bool(words) and words[0] == "equal"


def rewrite_failure(rewrite: ChatResponse, parent_text: str, cfg: EvolveConfig) -> tuple[str, str] | None:
    """(reason, detail) when a rewrite fails on its own text, before any answer."""
    if rewrite.error:
        return "generation_failed", f"{rewrite.key}: {rewrite.error}"
    text = (rewrite.text or "").strip()
    if not text:
        return "empty_rewrite", f"{rewrite.key}: the model returned no text"
    if rewrite.finish_reason == "length":
        return "rewrite_truncated", f"{rewrite.key}: stopped at max_rewrite_tokens={cfg.max_rewrite_tokens}"
    marker = copied_marker(text, cfg.marker_words)
    if marker:
        return "copied_prompt_words", f"the rewrite copies the evolving prompt's words {marker!r}"
    if _normal(text) == _normal(parent_text):
        return "no_information_gain", "the rewrite is its parent, word for word"
    return None


def answer_failure(answer: ChatResponse, cfg: EvolveConfig) -> tuple[str, str] | None:
    """(reason, detail) when the answer to a rewrite shows the rewrite failed."""
    if answer.error:
        return "generation_failed", f"{answer.key}: {answer.error}"
    text = answer.text or ""
    if sorry_and_short(text, cfg.sorry_max_words):
        return "sorry_short_answer", f"the answer says sorry in {len(text.split())} words: {text.strip()[:120]!r}"
    if only_stop_words(text):
        return "stopword_answer", f"the answer is only punctuation and stop words: {text.strip()[:120]!r}"
    return None


# ----------------------------------------------------------------------------- rows

def first_user_turn(messages: list[dict]) -> int | None:
    return next((i for i, m in enumerate(messages) if m["role"] == "user"), None)


def _seed_row(row: dict) -> dict:
    """A seed with lineage meta; a row that already came out of evolve keeps its lineage."""
    meta = load_meta(row.get("meta"))
    if "root_id" in meta and "round" in meta:
        return row
    return {**row, "meta": update_meta(row.get("meta"), root_id=row["id"], parent_id=None, operation="seed", round=0)}


def _child_row(parent: dict, user_at: int, rewrite: str, op: str, round_no: int, model: str) -> dict:
    meta = {k: v for k, v in load_meta(parent.get("meta")).items() if k not in OWN_KEYS}
    parent_meta = load_meta(parent.get("meta"))
    lineage = {
        "root_id": parent_meta.get("root_id", parent["id"]),
        "parent_id": parent["id"],
        "operation": op,
        "round": round_no,
        "evolve_model": model,
    }
    prefix = [m for m in parent["messages"][:user_at] if m["role"] == "system"]
    return {
        "id": child_id(parent["id"], round_no),
        "messages": prefix + [{"role": "user", "content": rewrite}],
        "source": parent.get("source"),
        "generator": None,
        "category": parent.get("category"),
        "meta": update_meta(None, **meta, **lineage),
    }


def _params(cfg: EvolveConfig, key: str, max_tokens: int, temperature: float | None = None) -> dict:
    return {
        "temperature": cfg.temperature if temperature is None else temperature,
        "max_tokens": max_tokens,
        "seed": request_seed(cfg.seed, key),
    }


def _add_usage(total: dict, usage: dict) -> None:
    for key, value in usage.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value


# ----------------------------------------------------------------------------- one round

def _rewrite_request(parent: dict, user_at: int, op: str, round_no: int, cfg: EvolveConfig) -> ChatRequest:
    key = f"{parent['id']}:evolve:{round_no}"
    prompt = fill(load_prompt(op), instruction=parent["messages"][user_at]["content"])
    return ChatRequest(key, [{"role": "user", "content": prompt}], _params(cfg, key, cfg.max_rewrite_tokens))


def _information_gain_request(parent_text: str, child: dict, cfg: EvolveConfig) -> ChatRequest:
    key = f"{child['id']}:information_gain"
    prompt = fill(load_prompt("no_information_gain"), parent=parent_text, instruction=child["messages"][-1]["content"])
    return ChatRequest(key, [{"role": "user", "content": prompt}], _params(cfg, key, 8, 0.0))


def _evolve_round(frontier, round_no, cfg, endpoint, journal, progress, usage):
    """Rewrite every lineage's latest survivor once; judge the rewrites.

    Returns the survivors as (child, operation), the failures as (child, reason, detail),
    and the next frontier (a failed lineage keeps its parent).
    """
    drafts = []
    for parent, user_at, base in frontier:
        op = choose_operation(cfg.seed, parent["id"], round_no, cfg.operations)
        drafts.append((parent, user_at, base, op, _rewrite_request(parent, user_at, op, round_no, cfg)))
    responses, used = chat_many([d[-1] for d in drafts], endpoint, journal=journal, progress=progress)
    _add_usage(usage, used)

    failures: list[tuple[dict, str, str]] = []
    candidates = []  # (frontier index, op, child)
    for index, ((parent, user_at, base, op, _), rewrite) in enumerate(zip(drafts, responses)):
        child = _child_row(parent, user_at, (rewrite.text or "").strip(), op, base + round_no, endpoint.model)
        failure = rewrite_failure(rewrite, parent["messages"][user_at]["content"], cfg)
        if failure:
            failures.append((child, *failure))
        else:
            candidates.append((index, op, child))

    answers, used = chat_many(
        [ChatRequest(f"{c['id']}:answer", c["messages"], _params(cfg, f"{c['id']}:answer", cfg.max_answer_tokens))
         for _, _, c in candidates],
        endpoint, journal=journal, progress=progress,
    )
    _add_usage(usage, used)
    verdicts: list[ChatResponse | None] = [None] * len(candidates)
    if cfg.check_information_gain:
        checks = []
        for index, _, child in candidates:
            parent, user_at = frontier[index][0], frontier[index][1]
            checks.append(_information_gain_request(parent["messages"][user_at]["content"], child, cfg))
        verdicts, used = chat_many(checks, endpoint, journal=journal, progress=progress)
        _add_usage(usage, used)

    survivors: list[tuple[dict, str]] = []
    next_frontier = list(frontier)
    for (index, op, child), answer, verdict in zip(candidates, answers, verdicts):
        child["meta"] = update_meta(child["meta"], evolve_answer=answer.text)
        failure = answer_failure(answer, cfg) or (verdict_failure(verdict) if verdict is not None else None)
        if failure:
            failures.append((child, *failure))
            continue
        survivors.append((child, op))
        next_frontier[index] = (child, len(child["messages"]) - 1, frontier[index][2])
    return survivors, failures, next_frontier


def verdict_failure(verdict: ChatResponse) -> tuple[str, str] | None:
    if verdict.error:
        return "generation_failed", f"{verdict.key}: {verdict.error}"
    if judged_equal(verdict.text or ""):
        return "no_information_gain", f"judged equal to its parent: {(verdict.text or '').strip()[:60]!r}"
    return None


# ----------------------------------------------------------------------------- stage core

def evolve_table(
    table: pa.Table,
    cfg: EvolveConfig,
    endpoint: Endpoint,
    journal: Path | None = None,
    progress: bool = True,
) -> StageResult:
    """Seeds in; seeds plus every round's surviving rewrites kept, failed rewrites rejected."""
    kept: list[dict] = []
    rejected: list[tuple[dict, str, str]] = []
    # Per lineage: its latest survivor, the index of its instruction, and the round the
    # lineage started from (non-zero when the input already came out of evolve).
    frontier: list[tuple[dict, int, int]] = []
    for row in table.to_pylist():
        user_at = first_user_turn(row["messages"] or [])
        if user_at is None or not row["messages"][user_at]["content"].strip():
            rejected.append((row, "no_instruction", "no non-empty user turn to evolve"))
            continue
        seed = _seed_row(row)
        kept.append(seed)
        frontier.append((seed, user_at, int(load_meta(seed["meta"]).get("round", 0))))

    usage: dict = {}
    rounds: dict[str, dict] = {}
    operations: Counter[str] = Counter()
    for round_no in range(1, cfg.rounds + 1):
        survivors, failures, frontier = _evolve_round(frontier, round_no, cfg, endpoint, journal, progress, usage)
        kept.extend(child for child, _ in survivors)
        rejected.extend(failures)
        operations.update(op for _, op in survivors)
        rounds[str(round_no)] = {
            "rewrites": len(survivors) + len(failures),
            "kept": len(survivors),
            "rejected_by_reason": dict(sorted(Counter(reason for _, reason, _ in failures).items())),
        }

    kept_table = conversations_from_rows(kept)
    rej_rows = [r for r, _, _ in rejected]
    rejected_table = make_rejects(
        conversations_from_rows(rej_rows), STAGE, [r for _, r, _ in rejected], [d for _, _, d in rejected]
    )
    seeds = table.num_rows
    stats = {
        "seeds": seeds,
        "rows_generated": kept_table.num_rows + rejected_table.num_rows - seeds,
        "rounds": rounds,
        "kept_by_operation": dict(sorted(operations.items())),
        "model": endpoint.model,
        "usage": usage,
    }
    return StageResult(kept_table, rejected_table, stats)
