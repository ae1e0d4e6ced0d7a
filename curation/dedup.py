"""Dedup stage: exact and MinHash-LSH near-duplicates, keeping the strongest generator's copy.

Everything per row lives in numpy arrays (uint32 signatures, uint64 digests), never in
Python objects, so a million conversations fit in a few GB:

1. key text (``prompt`` = system + user turns, or the whole ``conversation``), normalised
   with Arrow kernels: NFKC, lower case, punctuation/symbols/whitespace runs -> one space;
2. exact groups by the xxh3-128 digest of the normalised words;
3. word n-gram shingles hashed to 32 bits; MinHash signatures computed in numpy with
   datasketch's ``affine32`` permutations (bit-identical to ``datasketch.MinHash`` fed the
   same hashes, see ``shingle_hashfunc``);
4. LSH bands x rows from datasketch's optimum for the threshold, weighing false negatives
   far above false positives (a false positive only costs one confirmation); one row per
   exact group is indexed, empty keys never are;
5. candidate pairs confirmed by estimated Jaccard >= threshold; estimates within
   ``exact_margin`` of the threshold are settled by the exact Jaccard of the two rows'
   shingle hashes (re-shingled on demand); clusters by union-find;
6. per cluster the survivor is the highest ``priority`` generator, then the row with more
   assistant words, then the smallest id.
"""
from __future__ import annotations

from collections import Counter
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from pydantic import BaseModel, ConfigDict, Field

from .io import make_rejects
from .stage import StageResult

STAGE = "dedup"
PROMPT_ROLES = ("system", "user")
_U32_MAX = np.uint32(0xFFFFFFFF)
_NGRAM_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd: polynomial combination of word hashes
_BAND_MULT = np.uint64(0xC2B2AE3D27D4EB4F)
_SHINGLE_CHUNK = 1 << 16  # shingles per (chunk x num_perm) uint32 matrix: 32 MB at 128 perms
_PAIR_CHUNK = 1 << 16  # candidate pairs compared at a time


class DedupConfig(BaseModel):
    """Settings of `curate dedup` (recipe section ``dedup``)."""

    model_config = ConfigDict(extra="forbid")
    key: Literal["prompt", "conversation"] = Field(
        "prompt", description="What must match: the prompt (system + user turns) or the whole conversation."
    )
    threshold: float = Field(0.8, gt=0.0, lt=1.0, description="Jaccard similarity of word n-grams above which rows are near duplicates.")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations (signature length).")
    ngram: int = Field(5, ge=1, le=32, description="Words per shingle; keys with fewer words form one shingle of all their words.")
    priority: list[str] = Field(
        default_factory=list,
        description="Generators, strongest first: each cluster keeps the copy from the earliest listed one (case-insensitive).",
    )
    near: bool = Field(True, description="Also remove near duplicates (MinHash-LSH); off = exact duplicates of the normalised key only.")
    seed: int = Field(1, description="Seed of the MinHash permutations.")
    false_positive_weight: float = Field(
        0.05, ge=0.0, le=1.0, description="Weight of false positives when choosing LSH bands and rows (they are cheap: every candidate is confirmed)."
    )
    false_negative_weight: float = Field(
        0.95, ge=0.0, le=1.0, description="Weight of false negatives when choosing LSH bands and rows (a missed pair is never seen again)."
    )
    exact_margin: float = Field(
        0.1, ge=0.0, le=1.0,
        description="Candidates whose estimated Jaccard is this close to the threshold are settled by the exact Jaccard of their shingle hashes; 0 = estimate only.",
    )
    batch_rows: int = Field(4096, ge=1, description="Rows normalised and sketched at a time (bounds memory).")


# ---------------------------------------------------------------- keys and shingles


def key_texts(messages: pa.Array, key: str) -> pa.Array:
    """One string per conversation: the contents of the turns that form the key."""
    if isinstance(messages, pa.ChunkedArray):
        messages = messages.combine_chunks()
    flat = messages.flatten()
    content = pc.fill_null(pc.struct_field(flat, "content"), "")
    if key == "prompt":
        in_prompt = pc.fill_null(pc.is_in(pc.struct_field(flat, "role"), value_set=pa.array(PROMPT_ROLES)), False)
        content = pc.if_else(in_prompt, content, "")
    offsets = pc.subtract(messages.offsets, messages.offsets[0])
    return pc.binary_join(pa.ListArray.from_arrays(offsets, content), "\n")


def normalised_words(text: pa.Array) -> pa.ListArray:
    """Words of each text after NFKC, lower-casing and turning punctuation/symbols into spaces.

    An empty or all-punctuation text gives an empty list (never a list holding "")."""
    text = pc.utf8_lower(pc.utf8_normalize(pc.fill_null(text, ""), "NFKC"))
    # NFKC already turned exotic spaces into " "; punctuation, symbols and other whitespace become " " too.
    # (pyarrow's utf8_split_whitespace is avoided: it returned words with trailing spaces on real data.)
    text = pc.replace_substring_regex(text, r"[\p{P}\p{S}\t\n\v\f\r\x{85}\x{2028}\x{2029}]+", " ")
    pieces = pc.split_pattern(text, " ")
    flat = pc.list_flatten(pieces)
    real = pc.not_equal(flat, "")  # runs of spaces split into empty strings
    parents = pc.list_parent_indices(pieces).to_numpy()
    lengths = np.bincount(parents, weights=real.to_numpy(zero_copy_only=False), minlength=len(text))
    offsets = np.zeros(len(text) + 1, dtype=np.int64)
    np.cumsum(lengths.astype(np.int64), out=offsets[1:])
    words = pc.filter(flat, real)
    return pa.LargeListArray.from_arrays(pa.array(offsets), words)


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's finaliser, the pre-mix datasketch's affine32 scheme applies to every input hash."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _word_hashes(words: pa.LargeListArray) -> np.ndarray:
    """64-bit xxh3 of every word; each distinct word of the batch is hashed once."""
    flat = words.flatten()
    if len(flat) == 0:
        return np.zeros(0, dtype=np.uint64)
    encoded = pc.dictionary_encode(flat)
    vocab = encoded.dictionary.cast(pa.binary()).to_pylist()
    table = np.fromiter((xxhash.xxh3_64_intdigest(w) for w in vocab), dtype=np.uint64, count=len(vocab))
    return table[encoded.indices.to_numpy()]


def shingle_hashes(words: pa.LargeListArray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of each row's word n-grams, concatenated, and the shingle count per row.

    A row with 1..ngram-1 words has one shingle made of all its words; an empty row has none."""
    h = _word_hashes(words)
    starts = words.offsets.to_numpy()[:-1].astype(np.int64)
    lengths = np.diff(words.offsets.to_numpy()).astype(np.int64)
    counts = np.where(lengths >= ngram, lengths - ngram + 1, np.minimum(lengths, 1))
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.uint32), counts
    first = np.repeat(starts, counts) + (np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts))
    span = np.repeat(np.minimum(lengths, ngram), counts)
    g = np.zeros(total, dtype=np.uint64)
    last = len(h) - 1
    for k in range(ngram):
        step = g * _NGRAM_MULT + h[np.minimum(first + k, last)]
        g = np.where(k < span, step, g)
    return (_fmix64(g) >> np.uint64(32)).astype(np.uint32), counts


def shingle_hashfunc(value: int) -> int:
    """The hash datasketch.MinHash needs to reproduce our signatures: shingle hashes are already hashes."""
    return int(value)


# ---------------------------------------------------------------- MinHash and LSH


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters (a odd, b), as uint32 arrays."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def minhash_signatures(hashes: np.ndarray, counts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One uint32 signature per row: min over its shingles of a * fmix32(h) + b (mod 2**32).

    Rows without shingles keep the all-max signature (they never enter LSH)."""
    n = len(counts)
    sig = np.full((n, len(a)), _U32_MAX, dtype=np.uint32)
    if len(hashes) == 0:
        return sig
    row_of = np.repeat(np.arange(n), counts)
    mixed = _fmix32(hashes)
    # (num_perm x chunk) layout: the min-reduction runs along contiguous memory, ~6x faster than (chunk x num_perm)
    block = np.empty((len(a), min(_SHINGLE_CHUNK, len(hashes))), dtype=np.uint32)
    for s0 in range(0, len(hashes), _SHINGLE_CHUNK):
        hv = mixed[s0 : s0 + _SHINGLE_CHUNK]
        m = block[:, : len(hv)]
        np.multiply(a[:, None], hv[None, :], out=m)
        m += b[:, None]
        rows = row_of[s0 : s0 + _SHINGLE_CHUNK]
        seg = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        mins = np.minimum.reduceat(m, seg, axis=1).T
        target = rows[seg]
        sig[target] = np.minimum(sig[target], mins)
    return sig


def lsh_params(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) minimising the weighted false-positive + false-negative probability (datasketch's method)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(fp_weight, fn_weight))
    return lsh.b, lsh.r


def _band_keys(sig: np.ndarray, start: int, rows: int) -> np.ndarray:
    h = np.zeros(len(sig), dtype=np.uint64)
    for j in range(start, start + rows):
        h = (h ^ sig[:, j].astype(np.uint64)) * _BAND_MULT
    return _fmix64(h)


def candidate_pairs(sig: np.ndarray, bands: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (u < v) of signature rows sharing a band bucket.

    Per bucket each member is paired with the bucket's first member and with its predecessor:
    linear in the bucket size, and a member unlike the first one still links to its neighbours."""
    n = len(sig)
    codes = []
    for band in range(bands):
        keys = _band_keys(sig, band * rows, rows)
        order = np.argsort(keys, kind="stable")
        same = keys[order][1:] == keys[order][:-1]
        if not same.any():
            continue
        pos = np.arange(1, n)
        run_start = np.maximum.accumulate(np.where(np.r_[True, ~same], np.arange(n), 0))
        members = order[pos[same]]
        for partner in (order[run_start[pos[same]]], order[pos[same] - 1]):
            lo, hi = np.minimum(partner, members), np.maximum(partner, members)
            keep = lo != hi
            codes.append(np.unique(lo[keep].astype(np.uint64) * np.uint64(n) + hi[keep].astype(np.uint64)))
    if not codes:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    code = np.unique(np.concatenate(codes))
    return (code // np.uint64(n)).astype(np.int64), (code % np.uint64(n)).astype(np.int64)


def estimated_jaccard(sig: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Share of equal MinHash values of rows u[i] and v[i]."""
    out = np.empty(len(u), dtype=np.float64)
    for s0 in range(0, len(u), _PAIR_CHUNK):
        uu, vv = u[s0 : s0 + _PAIR_CHUNK], v[s0 : s0 + _PAIR_CHUNK]
        out[s0 : s0 + len(uu)] = np.count_nonzero(sig[uu] == sig[vv], axis=1) / sig.shape[1]
    return out


def union_find(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Root (the smallest member) of each node's component; vectorised union by min + path halving."""
    parent = np.arange(n)
    while len(u):
        ru, rv = parent[u], parent[v]
        open_ = ru != rv
        u, v, ru, rv = u[open_], v[open_], ru[open_], rv[open_]
        if not len(u):
            break
        low = np.minimum(ru, rv)
        np.minimum.at(parent, ru, low)
        np.minimum.at(parent, rv, low)
        while True:  # parent[x] <= x always holds, so jumping ends at the roots
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    return parent


# ---------------------------------------------------------------- survivors


def assistant_words(messages: pa.Array) -> np.ndarray:
    """Whitespace-separated words over the assistant turns: a cheap, deterministic length."""
    if isinstance(messages, pa.ChunkedArray):
        messages = messages.combine_chunks()
    flat = messages.flatten()
    counts = pc.fill_null(pc.count_substring_regex(pc.struct_field(flat, "content"), r"\S+"), 0).to_numpy()
    is_assistant = pc.fill_null(pc.equal(pc.struct_field(flat, "role"), "assistant"), False).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(messages).to_numpy()
    return np.bincount(parents, weights=counts * is_assistant, minlength=len(messages)).astype(np.int64)


def priority_ranks(generators: pa.Array, priority: list[str]) -> np.ndarray:
    """Index of each row's generator in ``priority`` (case-insensitive); unlisted or missing rank last."""
    wanted = pa.array([p.strip().lower() for p in priority], pa.string())
    names = pc.utf8_lower(pc.utf8_trim_whitespace(generators))
    ranks = pc.fill_null(pc.index_in(names, value_set=wanted), len(priority))
    return ranks.to_numpy(zero_copy_only=False).astype(np.int64)


def _survivors(ids: pa.Array, cluster: np.ndarray, rank: np.ndarray, words: np.ndarray) -> np.ndarray:
    """For every row, the row that survives its cluster."""
    keys = pa.table({"cluster": cluster, "rank": rank, "words": words, "id": ids})
    order = pc.sort_indices(
        keys, sort_keys=[("cluster", "ascending"), ("rank", "ascending"), ("words", "descending"), ("id", "ascending")]
    ).to_numpy()
    sorted_cluster = cluster[order]
    first = np.r_[True, sorted_cluster[1:] != sorted_cluster[:-1]]
    head = order[np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))]
    survivor = np.empty(len(order), dtype=np.int64)
    survivor[order] = head
    return survivor


def _assistant_words_in_clusters(table: pa.Table, cluster: np.ndarray, batch_rows: int) -> np.ndarray:
    """Assistant words, counted only where a tie-break can need them: rows sharing a cluster."""
    words = np.zeros(len(cluster), dtype=np.int64)
    _, inverse, sizes = np.unique(cluster, return_inverse=True, return_counts=True)
    rows = np.flatnonzero(sizes[inverse] > 1)
    messages = table.column("messages")
    for s0 in range(0, len(rows), batch_rows):
        part = rows[s0 : s0 + batch_rows]
        words[part] = assistant_words(messages.take(pa.array(part)))
    return words


def _size_histogram(cluster: np.ndarray) -> dict[str, int]:
    _, sizes = np.unique(cluster, return_counts=True)
    hist = Counter(int(s) for s in sizes[sizes > 1])
    return {str(k): hist[k] for k in sorted(hist)}


# ---------------------------------------------------------------- the stage


def sketch(table: pa.Table, config: DedupConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: 128-bit key digest (2 x uint64), non-empty flag and signature; batch by batch."""
    a, b = permutations(config.num_perm, config.seed)
    n = table.num_rows
    digests = np.zeros((n, 2), dtype=np.uint64)
    nonempty = np.zeros(n, dtype=bool)
    sig = np.empty((n, config.num_perm), dtype=np.uint32)
    messages = table.column("messages")
    for s0 in range(0, n, config.batch_rows):
        batch = messages.slice(s0, config.batch_rows).combine_chunks()
        s1 = s0 + len(batch)
        words = normalised_words(key_texts(batch, config.key))
        joined = pc.binary_join(words, " ").cast(pa.large_binary()).to_pylist()
        digests[s0:s1] = np.frombuffer(b"".join(xxhash.xxh3_128_digest(t) for t in joined), dtype=np.uint64).reshape(-1, 2)
        hashes, counts = shingle_hashes(words, config.ngram)
        nonempty[s0:s1] = counts > 0
        sig[s0:s1] = minhash_signatures(hashes, counts, a, b)
    return digests, nonempty, sig


def exact_jaccard(table: pa.Table, rows_a: np.ndarray, rows_b: np.ndarray, config: DedupConfig) -> np.ndarray:
    """Exact Jaccard of the shingle-hash sets of table rows rows_a[i] and rows_b[i] (re-shingled on demand)."""
    involved = np.unique(np.r_[rows_a, rows_b])
    sets: dict[int, np.ndarray] = {}
    messages = table.column("messages")
    for s0 in range(0, len(involved), config.batch_rows):
        part = involved[s0 : s0 + config.batch_rows]
        words = normalised_words(key_texts(messages.take(pa.array(part)), config.key))
        hashes, counts = shingle_hashes(words, config.ngram)
        for row, chunk in zip(part.tolist(), np.split(hashes, np.cumsum(counts)[:-1])):
            sets[row] = np.unique(chunk)
    out = np.empty(len(rows_a), dtype=np.float64)
    for i, (x, y) in enumerate(zip(rows_a.tolist(), rows_b.tolist())):
        a, b = sets[x], sets[y]
        inter = np.intersect1d(a, b, assume_unique=True).size
        out[i] = inter / (a.size + b.size - inter)
    return out


def confirm_pairs(
    table: pa.Table, rows: np.ndarray, sig: np.ndarray, u: np.ndarray, v: np.ndarray, config: DedupConfig
) -> tuple[np.ndarray, int]:
    """Which candidates (u[i], v[i]) of signature rows ``sig`` (table rows ``rows``) reach the threshold.

    The MinHash estimate decides, unless it is within ``exact_margin`` of the threshold (its
    standard error is about 0.035 at 128 perms): then the exact Jaccard does. Returns the mask
    and how many pairs needed the exact check."""
    sim = estimated_jaccard(sig, u, v)
    confirmed = sim >= config.threshold
    unsure = np.flatnonzero(np.abs(sim - config.threshold) < config.exact_margin)
    if len(unsure):
        confirmed[unsure] = exact_jaccard(table, rows[u[unsure]], rows[v[unsure]], config) >= config.threshold
    return confirmed, int(len(unsure))


def _exact_groups(digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group id of each row and the first row of each group."""
    order = np.lexsort((np.arange(len(digests)), digests[:, 1], digests[:, 0]))
    d = digests[order]
    new = np.r_[True, (d[1:] != d[:-1]).any(axis=1)] if len(d) else np.zeros(0, dtype=bool)
    group_sorted = np.cumsum(new) - 1
    group = np.empty(len(d), dtype=np.int64)
    group[order] = group_sorted
    first_row = order[new]
    return group, first_row


def dedup_table(table: pa.Table, config: DedupConfig) -> StageResult:
    """Remove exact and near duplicates; each cluster keeps its highest-priority copy."""
    n = table.num_rows
    bands, rows = lsh_params(config.threshold, config.num_perm, config.false_positive_weight, config.false_negative_weight)
    digests, nonempty, sig = sketch(table, config)

    group, first_row = _exact_groups(digests)
    reps = first_row[nonempty[first_row]]  # one indexed row per non-empty exact group
    u = v = np.zeros(0, dtype=np.int64)
    if config.near:
        rep_sig = sig[reps]  # one copy, freed before the outputs are built
        u, v = candidate_pairs(rep_sig, bands, rows)
        confirmed, n_exact = confirm_pairs(table, reps, rep_sig, u, v, config)
        del rep_sig
    else:
        confirmed, n_exact = np.zeros(0, dtype=bool), 0
    root = union_find(len(reps), u[confirmed], v[confirmed])

    rep_of_group = np.full(len(first_row), -1, dtype=np.int64)
    rep_of_group[nonempty[first_row]] = np.arange(len(reps))
    local = rep_of_group[group]
    cluster = np.where(local >= 0, reps[root[np.maximum(local, 0)]], np.arange(n))  # empty keys: own cluster

    words = _assistant_words_in_clusters(table, cluster, config.batch_rows)
    rank = priority_ranks(table.column("generator").combine_chunks(), config.priority)
    survivor = _survivors(table.column("id").combine_chunks(), cluster, rank, words)
    removed = np.flatnonzero(survivor != np.arange(n))
    kept_mask = survivor == np.arange(n)

    exact = group[removed] == group[survivor[removed]]
    sims = estimated_jaccard(sig, removed, survivor[removed])
    kept_ids = table.column("id").take(pa.array(survivor[removed])).to_pylist()
    size_of = Counter(cluster[removed].tolist())
    reasons, details = [], []
    for row, kept, is_exact, s in zip(removed.tolist(), kept_ids, exact.tolist(), sims.tolist()):
        size = size_of[cluster[row]] + 1
        if is_exact:
            reasons.append("exact_duplicate")
            details.append(f"kept {kept}: same normalised {config.key} (similarity 1.000, cluster of {size})")
        else:
            reasons.append("near_duplicate")
            details.append(f"kept {kept}: estimated Jaccard {s:.3f} of {config.ngram}-word shingles (cluster of {size})")

    kept = table.filter(pa.array(kept_mask))
    rejected = make_rejects(table.take(pa.array(removed)), STAGE, reasons, details)
    reason_counts = Counter(reasons)
    stats = {
        "key": config.key,
        "threshold": config.threshold,
        "num_perm": config.num_perm,
        "ngram": config.ngram,
        "lsh_bands": bands,
        "lsh_rows": rows,
        "empty_keys": int(n - nonempty.sum()),
        "exact_groups": int(len(first_row)),
        "lsh_indexed": int(len(reps)) if config.near else 0,
        "candidate_pairs": int(len(u)),
        "exact_checked_pairs": n_exact,
        "confirmed_pairs": int(confirmed.sum()),
        "exact_duplicates": reason_counts.get("exact_duplicate", 0),
        "near_duplicates": reason_counts.get("near_duplicate", 0),
        "clusters": int(len(size_of)),
        "cluster_size_histogram": _size_histogram(cluster),
    }
    return StageResult(kept=kept, rejected=rejected, stats=stats)
