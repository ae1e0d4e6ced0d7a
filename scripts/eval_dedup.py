"""Quality of `curate dedup`: recall/precision against brute-force Jaccard, and agreement with GPTeacher.

Run:  .venv/bin/python scripts/eval_dedup.py

Recall/precision: on each sample, rows with the same normalised key are collapsed first
(exact duplicates are trivially found), then the true Jaccard of every pair's word
5-gram sets is computed by brute force (sparse matrix products over the shingle strings,
independent of the hashing in curation.dedup). A true pair has Jaccard >= threshold.
- recall: true pairs that end in one cluster (one of them is removed);
- edge precision: confirmed candidate pairs (MinHash estimate >= threshold, exact Jaccard
  when the estimate is borderline) whose true Jaccard is >= threshold; removal precision: removed rows whose true Jaccard with some
  other row of their cluster is >= threshold (nothing removed without a real near twin).

GPTeacher: the authors published Toolformer exact-deduplicated (7,673 rows) and after removing
pairs above 0.9 similarity (5,959 rows). We run our near-duplicate removal on the former and
compare which rows survive.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
from scipy.sparse import csr_matrix

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from curation.dedup import (  # noqa: E402
    DedupConfig,
    candidate_pairs,
    dedup_table,
    confirm_pairs,
    key_texts,
    lsh_params,
    normalised_words,
    sketch,
)
from curation.ingest import ingest_paths  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def distinct_keys(table: pa.Table, key: str) -> tuple[pa.Table, list[list[str]]]:
    words = normalised_words(key_texts(table.column("messages"), key)).to_pylist()
    seen, keep = set(), []
    for i, w in enumerate(words):
        k = " ".join(w)
        if w and k not in seen:
            seen.add(k)
            keep.append(i)
    return table.take(pa.array(keep)), [words[i] for i in keep]


def true_pairs(words: list[list[str]], ngram: int, threshold: float) -> dict[tuple[int, int], float]:
    """Brute force: Jaccard of every pair of shingle-string sets, kept when >= threshold."""
    vocab: dict[tuple, int] = {}
    rows, cols = [], []
    for i, w in enumerate(words):
        grams = {tuple(w[j : j + ngram]) for j in range(max(len(w) - ngram + 1, 1))}
        for g in grams:
            rows.append(i)
            cols.append(vocab.setdefault(g, len(vocab)))
    x = csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(words), len(vocab)))
    size = np.asarray(x.sum(axis=1)).ravel()
    pairs = {}
    for s0 in range(0, len(words), 500):
        inter = (x[s0 : s0 + 500] @ x.T).tocoo()
        i, j, v = inter.row + s0, inter.col, inter.data
        upper = i < j
        i, j, v = i[upper], j[upper], v[upper]
        jac = v / (size[i] + size[j] - v)
        for a, b, s in zip(i[jac >= threshold], j[jac >= threshold], jac[jac >= threshold]):
            pairs[(int(a), int(b))] = float(s)
    return pairs, x, size


def _jaccard(x, size, a: int, b: int) -> float:
    inter = x[a].multiply(x[b]).sum()
    return float(inter / (size[a] + size[b] - inter))


def evaluate(name: str, table: pa.Table, config: DedupConfig) -> dict:
    table, words = distinct_keys(table, config.key)
    truth, x, size = true_pairs(words, config.ngram, config.threshold)
    result = dedup_table(table, config)
    ids = table.column("id").to_pylist()
    index = {id_: i for i, id_ in enumerate(ids)}
    cluster = np.arange(len(ids))
    for row_id, detail in zip(result.rejected.column("id").to_pylist(), result.rejected.column("detail").to_pylist()):
        cluster[index[row_id]] = index[detail.split()[1].rstrip(":")]
    found = sum(1 for a, b in truth if cluster[a] == cluster[b])

    _, nonempty, sig = sketch(table, config)
    bands, rows = lsh_params(config.threshold, config.num_perm, config.false_positive_weight, config.false_negative_weight)
    u, v = candidate_pairs(sig, bands, rows)
    conf, _ = confirm_pairs(table, np.arange(len(ids)), sig, u, v, config)
    edges_true = sum(1 for a, b in zip(u[conf], v[conf]) if (int(a), int(b)) in truth)

    members: dict[int, list[int]] = {}
    for i, c in enumerate(cluster):
        members.setdefault(int(c), []).append(i)
    removed = [i for i in range(len(ids)) if cluster[i] != i]
    twin = set()
    for a, b in truth:
        twin.update((a, b))
    removed_ok = sum(1 for i in removed if i in twin and any(
        _jaccard(x, size, i, j) >= config.threshold for j in members[int(cluster[i])] if j != i))
    out = {
        "sample": name, "rows": len(ids), "true_pairs": len(truth), "recall": found / len(truth) if truth else 1.0,
        "confirmed_edges": int(conf.sum()), "edge_precision": edges_true / conf.sum() if conf.sum() else 1.0,
        "removed": len(removed), "removal_precision": removed_ok / len(removed) if removed else 1.0,
    }
    print(f"{name:34s} rows {out['rows']:6d}  true pairs {out['true_pairs']:6d}  recall {out['recall']:.3f}  "
          f"edges {out['confirmed_edges']:6d}  edge precision {out['edge_precision']:.3f}  "
          f"removed {out['removed']:5d}  removal precision {out['removal_precision']:.3f}")
    return out


def gpteacher_agreement(threshold: float, key: str, ngram: int = 5) -> dict:
    src = SHARED / "gpteacher"
    full = ingest_paths([src / "toolformer-dedupe-only-dataset.json"]).kept
    ref_rows = json.loads((src / "toolformer-similarity-0.9-dataset.json").read_text())
    raw_rows = json.loads((src / "toolformer-dedupe-only-dataset.json").read_text())
    reference = {(r["instruction"], r["input"], r["response"]) for r in ref_rows}
    authors_keep = np.array([(r["instruction"], r["input"], r["response"]) in reference for r in raw_rows])
    assert full.num_rows == len(raw_rows)
    result = dedup_table(full, DedupConfig(threshold=threshold, key=key, ngram=ngram))
    kept_ids = set(result.kept.column("id").to_pylist())
    ours_keep = np.array([i in kept_ids for i in full.column("id").to_pylist()])
    both_remove = int((~ours_keep & ~authors_keep).sum())
    out = {
        "key": key, "threshold": threshold, "ngram": ngram, "rows": len(raw_rows), "authors_removed": int((~authors_keep).sum()),
        "we_removed": int((~ours_keep).sum()), "both_removed": both_remove,
        "agreement": float((ours_keep == authors_keep).mean()),
        "our_removals_also_authors": both_remove / max(1, int((~ours_keep).sum())),
        "authors_removals_we_found": both_remove / max(1, int((~authors_keep).sum())),
    }
    print(f"gpteacher key={key:12s} t={threshold} ngram={ngram}: authors removed {out['authors_removed']}, we removed {out['we_removed']}, "
          f"both {both_remove}; row agreement {out['agreement']:.3f}; ours also theirs {out['our_removals_also_authors']:.3f}; "
          f"theirs found by us {out['authors_removals_we_found']:.3f}")
    return out


def main() -> None:
    from bench_dedup import synthesise

    print("recall / precision vs brute force (threshold 0.8, 128 perms, 5-word shingles)")
    toolformer = ingest_paths([SHARED / "gpteacher" / "toolformer-dedupe-only-dataset.json"]).kept
    alpaca = ingest_paths([SHARED / "alpaca_eval"]).kept
    synthetic = next(synthesise(6000, seed=1, batch=6000))
    for name, table, key in [
        ("synthetic perturbations (conv.)", synthetic, "conversation"),
        ("gpteacher toolformer (conv.)", toolformer, "conversation"),
        ("gpteacher toolformer (prompt)", toolformer, "prompt"),
        ("alpaca_eval 12 models (conv.)", alpaca, "conversation"),
    ]:
        evaluate(name, table, DedupConfig(key=key))
    print()
    for key in ("conversation", "prompt"):
        for threshold in (0.8, 0.9):
            for ngram in (1, 3, 5):
                gpteacher_agreement(threshold, key, ngram)


if __name__ == "__main__":
    main()
