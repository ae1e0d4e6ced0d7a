"""Train the offline category model shipped as curation/assets/tagger.json.

    .venv/bin/python scripts/train_tagger.py [--data ../shared/data] [--out curation/assets/tagger.json]

Labelled data, all from the shared public data (see docs/tag.md):

- whole sources with one obvious category: gsm8k -> math, codealpaca -> coding, GPTeacher
  roleplay -> roleplay, LLaMA-Factory glaive tool calls, ToolBench traces and GPTeacher
  toolformer -> tool_use, LLaMA-Factory identity -> steering;
- hand labels (scripts/tag_labels.tsv, split ``train``) for the rows no source labels:
  LLaMA-Factory alpaca_en_demo and the Stanford Alpaca seed tasks.

Sources used for evaluation (split ``heldout`` and BFCL / reason_tool_use) are never read
here. Training is deterministic: fixed seed, fixed sampling, full-batch Adam.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import xxhash

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curation.ingest import ingest_paths  # noqa: E402
from curation.schema import CATEGORIES  # noqa: E402
from curation.tag import Tagger, conversation_signals  # noqa: E402

SEED = 20240815
LABELS = ROOT / "scripts" / "tag_labels.tsv"
# source path (relative to the data folder) -> category, for whole-source labels
SOURCE_LABELS: dict[str, str] = {
    "gsm8k/train.jsonl": "math",
    "codealpaca/code_alpaca_2k.json": "coding",
    "gpteacher/roleplay-simple-deduped-roleplay-instruct.json": "roleplay",
    "llamafactory/glaive_toolcall_en_demo.json": "tool_use",
    "toolbench": "tool_use",
    "gpteacher/toolformer-dedupe-only-dataset.json": "tool_use",
    "llamafactory/identity.json": "steering",
}
HAND_LABELLED_TRAIN = ["llamafactory/alpaca_en_demo.json", "seeds/alpaca_seed_tasks.jsonl"]
# held out from training (their rows are only ever evaluated)
HELDOUT_SOURCES = [
    "alpaca_eval", "arena_hard/v0.1_question.jsonl", "seeds/self_instruct_user_oriented.jsonl",
    "oasst/en_100_tree.jsonl", "instructionwild", "bfcl", "llamafactory/reason_tool_use_demo_50.jsonl",
]
PER_SOURCE_CAP = 1200


def prompt_key(messages: list[dict]) -> str:
    """Key of a conversation in the labelling file: hash of its first user turn."""
    first = next((m["content"] for m in messages if m["role"] == "user"), "")
    return xxhash.xxh3_64_hexdigest(first.strip().encode("utf-8"))


def read_labels(split: str) -> dict[tuple[str, str], str]:
    """(source prefix, prompt key) -> category, for one split of the labelling file."""
    out: dict[tuple[str, str], str] = {}
    with open(LABELS, encoding="utf-8") as f:
        for row in csv.reader((line for line in f if not line.startswith("#")), delimiter="\t"):
            if row and row[0] == split:
                assert row[3] in CATEGORIES, row
                out[(row[1], row[2])] = row[3]
    return out


def read_source(data: Path, rel: str) -> list[dict]:
    result = ingest_paths([data / rel])
    return result.kept.to_pylist()


def training_rows(data: Path, rng: np.random.Generator) -> tuple[list[dict], list[str], Counter]:
    rows, labels, origin = [], [], Counter()
    for rel, cat in SOURCE_LABELS.items():
        got = read_source(data, rel)
        if len(got) > PER_SOURCE_CAP:
            got = [got[i] for i in sorted(rng.choice(len(got), PER_SOURCE_CAP, replace=False))]
        rows += got
        labels += [cat] * len(got)
        origin[rel] += len(got)
    hand = read_labels("train")
    for rel in HAND_LABELLED_TRAIN:
        seen = set()
        for r in read_source(data, rel):
            key = prompt_key(r["messages"])
            if (rel, key) in hand and key not in seen:
                seen.add(key)
                rows.append(r)
                labels.append(hand[(rel, key)])
                origin[rel] += 1
    return rows, labels, origin


def featurise(rows: list[dict], max_chars: int) -> list[list[str]]:
    return [conversation_signals(r["messages"], max_chars, apply_rules=False).tokens for r in rows]


def build_vocab(token_lists: list[list[str]], min_df: int) -> dict[str, int]:
    df = Counter(t for tokens in token_lists for t in set(tokens))
    kept = sorted(t for t, n in df.items() if n >= min_df)
    return {t: i for i, t in enumerate(kept)}


def train(token_lists, labels, vocab, categories, epochs: int, l2: float, lr: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced softmax regression on binary token features, full-batch Adam."""
    n, k, v = len(token_lists), len(categories), len(vocab)
    y = np.array([categories.index(c) for c in labels])
    ids, row_of = [], []
    for i, tokens in enumerate(token_lists):
        u = sorted({vocab[t] for t in tokens if t in vocab})
        ids += u
        row_of += [i] * len(u)
    ids, row_of = np.array(ids), np.array(row_of)
    class_n = np.bincount(y, minlength=k).astype(np.float64)
    sample_w = (n / (k * np.maximum(class_n, 1)))[y]
    sample_w /= sample_w.sum()
    rng = np.random.default_rng(seed)
    W = rng.normal(0, 0.01, (v, k))
    b = np.zeros(k)
    mW, vW, mb, vb = np.zeros_like(W), np.zeros_like(W), np.zeros_like(b), np.zeros_like(b)
    onehot = np.eye(k)[y]
    for step in range(1, epochs + 1):
        scores = np.zeros((n, k)) + b
        np.add.at(scores, row_of, W[ids])
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) * sample_w[:, None]
        gW = np.zeros_like(W)
        np.add.at(gW, ids, g[row_of])
        gW += l2 * W
        gb = g.sum(axis=0)
        for param, grad, m, s in ((W, gW, mW, vW), (b, gb, mb, vb)):
            m *= 0.9
            m += 0.1 * grad
            s *= 0.999
            s += 0.001 * grad * grad
            param -= lr * (m / (1 - 0.9**step)) / (np.sqrt(s / (1 - 0.999**step)) + 1e-8)
        if step % 50 == 0 or step == epochs:
            loss = -(np.log(p[np.arange(n), y] + 1e-12) * sample_w).sum()
            acc = (p.argmax(1) == y).mean()
            print(f"  step {step}: loss {loss:.4f}, train accuracy {acc:.3f}", file=sys.stderr)
    return W.astype(np.float32), b.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "curation" / "assets" / "tagger.json")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--l2", type=float, default=1e-4)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--min-df", type=int, default=2)
    ap.add_argument("--max-chars", type=int, default=2000)
    args = ap.parse_args()
    t0 = time.time()
    rng = np.random.default_rng(SEED)
    rows, labels, origin = training_rows(args.data, rng)
    token_lists = featurise(rows, args.max_chars)
    vocab = build_vocab(token_lists, args.min_df)
    categories = list(CATEGORIES)
    print(f"{len(rows)} training rows, vocabulary {len(vocab)}; by category {dict(Counter(labels))}", file=sys.stderr)
    W, b = train(token_lists, labels, vocab, categories, args.epochs, args.l2, args.lr, SEED)
    # drop tokens whose weights are all ~0 (they only cost space)
    keep = np.abs(W).max(axis=1) >= 0.01
    tokens = sorted(vocab, key=vocab.get)
    vocab = {t: i for i, t in enumerate(t for t, k in zip(tokens, keep) if k)}
    W = W[keep]
    info = {
        "seed": SEED,
        "trained_on": dict(origin),
        "rows_by_category": dict(Counter(labels)),
        "epochs": args.epochs, "l2": args.l2, "lr": args.lr, "min_df": args.min_df, "max_chars": args.max_chars,
        "heldout_sources_never_read": HELDOUT_SOURCES,
    }
    tagger = Tagger(tuple(categories), vocab, W, b, info)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(tagger.to_json(), separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, {len(vocab)} tokens) in {time.time() - t0:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
