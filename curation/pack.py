"""Pack: ChatML-tokenized conversations, best-fit-decreasing into fixed-length sequences.

Every packed row holds whole samples back to back (no padding); ``position_ids``
restart at 0 for each sample so a trainer can rebuild ``cu_seqlens`` and run
variable-length attention without cross-sample attention. Packing is best-fit
decreasing over the whole dataset in O(n log n); the packs are then shuffled with
the seed and dealt to shards so that every shard carries the same tokens and the
same category mix.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from .errors import CurationError
from .io import make_rejects
from .render import IGNORE, Tokenized, tokenize_table
from .stage import StageResult
from .tokenizer import CHATML_SPECIAL_TOKENS, Tokenizer, load_tokenizer

STAGE = "pack"
UNCATEGORIZED = "uncategorized"
PACK_SCHEMA = pa.schema(
    [
        pa.field("input_ids", pa.list_(pa.int32())),
        pa.field("labels", pa.list_(pa.int32())),
        pa.field("position_ids", pa.list_(pa.int32())),
        pa.field("seq_lens", pa.list_(pa.int32())),
        pa.field("sample_ids", pa.list_(pa.string())),
        pa.field("num_tokens", pa.int32()),
        pa.field("num_loss_tokens", pa.int32()),
    ]
)


class PackConfig(BaseModel):
    """Settings of `curate pack` (recipe section `pack`)."""

    model_config = ConfigDict(extra="forbid")
    seq_len: int = Field(8192, ge=16, description="Tokens per packed sequence.")
    shards: int = Field(1, ge=1, description="Number of Arrow files, balanced by tokens and category mix.")
    tokenizer: str = Field("llama3", description="llama3 (pinned tiktoken rank file) or PATH/tokenizer.json.")
    special_tokens: dict[str, int] = Field(
        default_factory=lambda: dict(CHATML_SPECIAL_TOKENS),
        description="ChatML markers -> reserved special-token ids of the tokenizer.",
    )
    oversize: Literal["drop", "truncate", "split"] = Field(
        "drop",
        description="Conversation longer than seq_len: drop (reject too_long), truncate at the last assistant "
        "turn that fits, or split into samples at assistant-turn boundaries (system prompt repeated).",
    )
    seed: int = Field(0, description="Seed of the pack shuffle.")


@dataclass
class Sample:
    """One packable piece of a conversation (the whole of it unless truncated or split)."""

    row: int
    sample_id: str
    input_ids: np.ndarray
    labels: np.ndarray
    oversize: str | None = None


@dataclass
class PackResult(StageResult):
    """StageResult plus the packed shards and the per-sample index."""

    shards: list[pa.Table] = field(default_factory=list)
    samples: pa.Table | None = None


# ----------------------------------------------------------------------------- oversize


def _assistant_ends(ends: np.ndarray, roles: list[str]) -> np.ndarray:
    return np.asarray([e for e, r in zip(ends, roles) if r == "assistant"], dtype=np.int64)


def truncate_sample(ids: np.ndarray, labels: np.ndarray, ends: np.ndarray, roles: list[str], seq_len: int):
    """Cut after the last assistant turn that ends within seq_len; None when none does."""
    fits = _assistant_ends(ends, roles)
    fits = fits[fits <= seq_len]
    if not len(fits):
        return None
    cut = int(fits[-1])
    return ids[:cut], labels[:cut]


def split_sample(ids: np.ndarray, labels: np.ndarray, ends: np.ndarray, roles: list[str], seq_len: int):
    """Split at assistant-turn ends into pieces of at most seq_len tokens.

    Each piece repeats the leading system turns (tool definitions live there) after
    ``<|begin_of_text|>``. Returns (pieces, tokens_left_out): a run of turns that cannot
    fit even alone is skipped and counted, never silently lost.
    """
    n_system = 0
    while n_system < len(roles) and roles[n_system] == "system":
        n_system += 1
    prefix_end = int(ends[n_system - 1]) if n_system else 1
    starts = np.concatenate([[1], ends[:-1]]).astype(np.int64)
    pieces, left_out, i = [], 0, n_system
    while i < len(roles):
        start = int(starts[i])
        best = None
        for j in range(i, len(roles)):
            if prefix_end + int(ends[j]) - start > seq_len:
                break
            if roles[j] == "assistant":
                best = j
        if best is None:  # skip to past the next assistant turn, or to the end
            nxt = next((j for j in range(i, len(roles)) if roles[j] == "assistant"), len(roles) - 1)
            left_out += int(ends[nxt]) - start
            i = nxt + 1
            continue
        stop = int(ends[best])
        pieces.append(
            (np.concatenate([ids[:prefix_end], ids[start:stop]]), np.concatenate([labels[:prefix_end], labels[start:stop]]))
        )
        i = best + 1
    return pieces, left_out


# ----------------------------------------------------------------------------- packing


def best_fit_decreasing(lengths, capacity: int) -> list[list[int]]:
    """Bins of item indices: each item goes to the fullest bin it still fits in.

    A max segment tree over remaining capacities 0..capacity finds the smallest
    remaining capacity >= the item in O(log capacity); sorting makes it O(n log n).
    """
    lengths = [int(x) for x in lengths]
    if any(x > capacity or x <= 0 for x in lengths):
        raise ValueError("every item must have 0 < length <= capacity")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    size = 1 << capacity.bit_length()
    tree = [0] * (2 * size)  # leaf c holds c while some open bin has c tokens left
    open_bins: list[list[int]] = [[] for _ in range(capacity + 1)]
    bins: list[list[int]] = []

    def set_leaf(c: int, value: int) -> None:
        node = c + size
        tree[node] = value
        node >>= 1
        while node:
            best = max(tree[2 * node], tree[2 * node + 1])
            if tree[node] == best:
                break
            tree[node] = best
            node >>= 1

    for item in order:
        n = lengths[item]
        if tree[1] >= n:
            node = 1
            while node < size:
                node = 2 * node if tree[2 * node] >= n else 2 * node + 1
            room = node - size
            b = open_bins[room].pop()
            if not open_bins[room]:
                set_leaf(room, 0)
        else:
            b, room = len(bins), capacity
            bins.append([])
        bins[b].append(item)
        left = room - n
        if left > 0:
            if not open_bins[left]:
                set_leaf(left, left)
            open_bins[left].append(b)
    return bins


def balance_shards(pack_tokens: np.ndarray, pack_categories: np.ndarray, num_shards: int, seq_len: int) -> np.ndarray:
    """Shard index per pack: equal pack counts (±1), tokens and category mix as even as greedy gets.

    Packs are taken in their (shuffled) order; each goes to the shard, among those with
    room, whose remaining need per category (its share of the whole) it fills best.
    """
    num_packs = len(pack_tokens)
    quota_low, extra = divmod(num_packs, num_shards)
    need = np.tile(pack_categories.sum(axis=0) / num_shards, (num_shards, 1)).astype(np.float64)
    counts = np.zeros(num_shards, dtype=np.int64)
    full_high = 0  # shards that took quota_low + 1 packs
    assignment = np.empty(num_packs, dtype=np.int64)
    for p in range(num_packs):
        room = (counts < quota_low) | ((counts == quota_low) & (full_high < extra))
        score = need @ pack_categories[p]
        score[~room] = -np.inf
        s = int(np.argmax(score))
        assignment[p] = s
        need[s] -= pack_categories[p]
        counts[s] += 1
        if counts[s] == quota_low + 1:
            full_high += 1
    limit = max(0.001 * pack_tokens.sum() / num_shards, seq_len)
    _even_out_tokens(assignment, pack_tokens.astype(np.int64), pack_categories, num_shards, limit)
    # shards with one extra pack first, as datasets' contiguous sharding expects
    order = np.argsort(-counts, kind="stable")
    rename = np.empty(num_shards, dtype=np.int64)
    rename[order] = np.arange(num_shards)
    return rename[assignment]


def _even_out_tokens(assignment: np.ndarray, tokens: np.ndarray, categories: np.ndarray, num_shards: int, limit: float) -> None:
    """Swap packs between the fullest and the emptiest shard until their token gap is within ``limit``.

    Counts per shard stay as they are. A swap that closes the gap at once is chosen to
    move the fewest category tokens, so the mix found above holds; otherwise the swap
    that narrows the gap most is made and the search goes on.
    """
    for _ in range(len(tokens)):
        totals = np.bincount(assignment, weights=tokens, minlength=num_shards)
        hi, lo = int(np.argmax(totals)), int(np.argmin(totals))
        gap = totals[hi] - totals[lo]
        if gap <= limit:
            return
        in_hi, in_lo = np.flatnonzero(assignment == hi), np.flatnonzero(assignment == lo)
        delta = tokens[in_hi][:, None] - tokens[in_lo][None, :]
        new_gap = np.abs(gap - 2 * delta)
        moved = np.abs(categories[in_hi][:, None, :] - categories[in_lo][None, :, :]).sum(axis=2)
        closing = new_gap <= limit
        if closing.any():
            i, j = np.unravel_index(int(np.argmin(np.where(closing, moved, np.inf))), moved.shape)
        else:
            i, j = np.unravel_index(int(np.argmin(new_gap + 1e-9 * moved)), moved.shape)
            if new_gap[i, j] >= gap:
                return
        assignment[in_hi[i]], assignment[in_lo[j]] = lo, hi


# ----------------------------------------------------------------------------- the stage


def _samples_of(tokenized: Tokenized, ids: list[str], config: PackConfig):
    """Samples to pack, plus (row, reason, detail) for rows that give none, plus oversize stats."""
    samples: list[Sample] = []
    rejects: list[tuple[int, str, str]] = []
    oversize = Counter()
    seq_len = config.seq_len
    for row in range(len(tokenized)):
        input_ids, labels = tokenized.input_ids[row], tokenized.labels[row]
        roles, ends = tokenized.roles[row], tokenized.message_ends[row]
        if not np.any(labels != IGNORE):
            what = f"{len(roles)} messages, none from the assistant" if roles else "no messages"
            rejects.append((row, "no_trainable_tokens", what))
            continue
        n = len(input_ids)
        if n <= seq_len:
            samples.append(Sample(row, ids[row], input_ids, labels))
            continue
        oversize["conversations"] += 1
        too_long = f"{n} tokens > seq_len {seq_len}"
        if config.oversize == "drop":
            rejects.append((row, "too_long", too_long))
        elif config.oversize == "truncate":
            cut = truncate_sample(input_ids, labels, ends, roles, seq_len)
            if cut is None:
                rejects.append((row, "too_long", f"{too_long}; no assistant turn ends within it"))
                continue
            oversize["truncated"] += 1
            oversize["tokens_cut"] += n - len(cut[0])
            samples.append(Sample(row, ids[row], cut[0], cut[1], oversize="truncated"))
        else:
            pieces, left_out = split_sample(input_ids, labels, ends, roles, seq_len)
            if not pieces:
                rejects.append((row, "too_long", f"{too_long}; no assistant turn fits with the system prompt"))
                continue
            oversize["split"] += 1
            oversize["split_pieces"] += len(pieces)
            oversize["tokens_left_out"] += left_out
            for k, (piece_ids, piece_labels) in enumerate(pieces):
                samples.append(Sample(row, f"{ids[row]}#{k}", piece_ids, piece_labels, oversize=f"split {k + 1}/{len(pieces)}"))
    return samples, rejects, dict(oversize)


def _pack_rows(samples: list[Sample], packs: list[list[int]]) -> pa.Table:
    """The Arrow rows of the given packs: flat buffers and offsets, no per-token Python."""
    order = [i for pack in packs for i in pack]
    lens = np.fromiter((len(samples[i].input_ids) for i in order), dtype=np.int64, count=len(order))
    flat_ids = np.concatenate([samples[i].input_ids for i in order]) if order else np.zeros(0, np.int32)
    flat_labels = np.concatenate([samples[i].labels for i in order]) if order else np.zeros(0, np.int32)
    sample_starts = np.concatenate([[0], np.cumsum(lens)[:-1]]) if order else np.zeros(0, np.int64)
    positions = (np.arange(len(flat_ids)) - np.repeat(sample_starts, lens)).astype(np.int32)
    per_pack = np.asarray([len(p) for p in packs], dtype=np.int64)
    sample_offsets = np.concatenate([[0], np.cumsum(per_pack)]).astype(np.int32)
    token_offsets = np.concatenate([[0], np.cumsum(lens)])[sample_offsets].astype(np.int32)
    pack_tokens = np.diff(token_offsets)
    loss = np.add.reduceat((flat_labels != IGNORE).astype(np.int64), token_offsets[:-1]) if len(packs) else []
    tok_offsets = pa.array(token_offsets, pa.int32())
    smp_offsets = pa.array(sample_offsets, pa.int32())
    return pa.Table.from_arrays(
        [
            pa.ListArray.from_arrays(tok_offsets, pa.array(flat_ids.astype(np.int32))),
            pa.ListArray.from_arrays(tok_offsets, pa.array(flat_labels.astype(np.int32))),
            pa.ListArray.from_arrays(tok_offsets, pa.array(positions)),
            pa.ListArray.from_arrays(smp_offsets, pa.array(lens.astype(np.int32))),
            pa.ListArray.from_arrays(smp_offsets, pa.array([samples[i].sample_id for i in order], pa.string())),
            pa.array(pack_tokens.astype(np.int32)),
            pa.array(np.asarray(loss, dtype=np.int32)),
        ],
        schema=PACK_SCHEMA,
    )


def pack_table(table: pa.Table, config: PackConfig, tokenizer: Tokenizer | None = None) -> PackResult:
    """Tokenize, handle oversize, pack, shuffle and shard; kept = conversations packed."""
    tokenizer = tokenizer or load_tokenizer(config.tokenizer, config.special_tokens)
    tokenized = tokenize_table(table, tokenizer)
    ids = table.column("id").to_pylist()
    samples, reject_rows, oversize = _samples_of(tokenized, ids, config)
    rejected_idx = [r for r, _, _ in reject_rows]
    rejected = make_rejects(
        table.take(pa.array(rejected_idx, pa.int64())), STAGE, [r for _, r, _ in reject_rows], [d for _, _, d in reject_rows]
    )
    kept_rows = sorted({s.row for s in samples})
    kept = table.take(pa.array(kept_rows, pa.int64()))

    lengths = [len(s.input_ids) for s in samples]
    packs = best_fit_decreasing(lengths, config.seq_len)
    rng = np.random.default_rng(config.seed)
    packs = [packs[i] for i in rng.permutation(len(packs))]
    if packs and config.shards > len(packs):
        raise CurationError(f"--shards {config.shards} is more than the {len(packs)} packs")

    categories = [c or UNCATEGORIZED for c in table.column("category").to_pylist()]
    cat_names = sorted({categories[s.row] for s in samples})
    cat_index = {c: i for i, c in enumerate(cat_names)}
    pack_cats = np.zeros((len(packs), len(cat_names)), dtype=np.float64)
    for p, pack in enumerate(packs):
        for i in pack:
            pack_cats[p, cat_index[categories[samples[i].row]]] += lengths[i]
    shard_of = balance_shards(pack_cats.sum(axis=1), pack_cats, config.shards, config.seq_len) if packs else np.zeros(0, np.int64)

    shard_tables, shard_stats = [], []
    sample_shard = np.zeros(len(samples), dtype=np.int32)
    sample_pack = np.zeros(len(samples), dtype=np.int32)
    for s in range(config.shards):
        members = [packs[p] for p in np.flatnonzero(shard_of == s)]
        for row_in_shard, pack in enumerate(members):
            sample_shard[pack] = s
            sample_pack[pack] = row_in_shard
        shard_table = _pack_rows(samples, members)
        shard_tables.append(shard_table)
        cat_tokens = Counter()
        for pack in members:
            for i in pack:
                cat_tokens[categories[samples[i].row]] += lengths[i]
        shard_stats.append(
            {
                "packs": len(members),
                "tokens": int(sum(cat_tokens.values())),
                "loss_tokens": int(np.sum(shard_table.column("num_loss_tokens").to_numpy())) if members else 0,
                "category_tokens": dict(sorted(cat_tokens.items())),
            }
        )

    loss_per_sample = [int(np.count_nonzero(s.labels != IGNORE)) for s in samples]
    rows = [s.row for s in samples]
    samples_table = pa.table(
        {
            "sample_id": pa.array([s.sample_id for s in samples], pa.string()),
            "conversation_id": pa.array([ids[r] for r in rows], pa.string()),
            "category": table.column("category").take(pa.array(rows, pa.int64())),
            "source": table.column("source").take(pa.array(rows, pa.int64())),
            "generator": table.column("generator").take(pa.array(rows, pa.int64())),
            "num_tokens": pa.array(lengths, pa.int32()),
            "num_loss_tokens": pa.array(loss_per_sample, pa.int32()),
            "shard": pa.array(sample_shard, pa.int32()),
            "pack": pa.array(sample_pack, pa.int32()),
            "oversize": pa.array([s.oversize for s in samples], pa.string()),
        }
    )
    total = int(sum(lengths))
    stats = {
        "seq_len": config.seq_len,
        "tokenizer": {"name": tokenizer.name, "sha256": tokenizer.sha256},
        "num_samples": len(samples),
        "num_packs": len(packs),
        "lower_bound_packs": math.ceil(total / config.seq_len),
        "total_tokens": total,
        "loss_tokens": int(sum(loss_per_sample)),
        "efficiency": total / (len(packs) * config.seq_len) if packs else 0.0,
        "shards": shard_stats,
        "dropped": dict(sorted(Counter(r for _, r, _ in reject_rows).items())),
        "oversize": {"mode": config.oversize, **oversize},
        "seed": config.seed,
    }
    stats.update(balance_report(shard_stats))
    return PackResult(kept=kept, rejected=rejected, stats=stats, shards=shard_tables, samples=samples_table)


def balance_report(shard_stats: list[dict]) -> dict:
    """How even the shards came out: token spread and worst category share gap (points)."""
    tokens = [s["tokens"] for s in shard_stats]
    total = sum(tokens)
    if not total:
        return {"shard_token_spread": 0, "max_category_gap_pp": 0.0}
    whole = Counter()
    for s in shard_stats:
        whole.update(s["category_tokens"])
    gap = 0.0
    for s in shard_stats:
        if s["tokens"]:
            for c, n in whole.items():
                gap = max(gap, abs(100 * s["category_tokens"].get(c, 0) / s["tokens"] - 100 * n / total))
    return {"shard_token_spread": max(tokens) - min(tokens), "max_category_gap_pp": round(gap, 4)}


# ----------------------------------------------------------------------------- output


def check_out_dir(out_dir):
    """The output folder, refused early when it holds something other than a pack output."""
    from pathlib import Path

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "pack_stats.json").exists())):
        raise CurationError(f"{out}: exists and is not a pack output; choose another --out")
    return out


def write_pack_dir(result: PackResult, out_dir) -> list[str]:
    """Write the shards (a ``datasets`` folder), samples.parquet and pack_stats.json.

    Everything is built in a temporary sibling folder and swapped in at the end, so a
    failed run never leaves half a dataset; an existing folder is replaced only if it
    is a previous pack output (or empty).
    """
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from datasets import Dataset
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    from .io import write_json_atomic, write_table

    out = check_out_dir(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        whole = pa.concat_tables(result.shards) if result.shards else PACK_SCHEMA.empty_table()
        quiet = are_progress_bars_disabled()
        disable_progress_bars()
        try:
            Dataset(whole).save_to_disk(str(tmp), num_shards=max(1, len(result.shards)))
        finally:
            if not quiet:
                enable_progress_bars()
        files = sorted(p.name for p in tmp.glob("*.arrow"))
        for shard, name in zip(result.stats["shards"], files):
            shard["file"] = name
        write_table(result.samples, tmp / "samples.parquet")
        write_json_atomic(tmp / "pack_stats.json", result.stats)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return [str(out / f) for f in files]
