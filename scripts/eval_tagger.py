"""Measure the offline tagger on sources it never saw in training.

    .venv/bin/python scripts/eval_tagger.py [--data ../shared/data] [--json out.json] [--errors N] [--sets hand]
    .venv/bin/python scripts/eval_tagger.py --round hand-r10
    .venv/bin/python scripts/eval_tagger.py --external [.cache/tag_evalsets] [--assistant-system dev|held-out] [--only a,b]
    .venv/bin/python scripts/eval_tagger.py --conversations [FILE.jsonl ...]   # default: scripts/tag_written/*.jsonl

Leave-one-source-out retrains the model per fold, so it needs the word vectors of
scripts/distill_word_vectors.py (.cache/word_vectors.npz); --external scores the shipped model
on the sets scripts/fetch_tag_evalsets.py writes and needs neither.

Leave-one-source-out: for each hand-labelled source of scripts/tag_labels.tsv, a model is
trained (scripts/train_tagger.py's recipe) on everything except that source -- and except
any prompt of it that also appears elsewhere -- and tags that source's labelled rows.
Tool-use sources that no training ever reads (BFCL, LLaMA-Factory reason_tool_use,
ToolBench) and the identity set (steering) are tagged as well; those
are decided by rules, which are never trained. Prints per-category precision / recall /
F1, macro-F1, the confusion matrix and per-source accuracy.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import xxhash

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from curation.schema import CATEGORIES  # noqa: E402
from curation.tag import classify  # noqa: E402
from train_tagger import (  # noqa: E402
    EVAL_ONLY_ROUNDS, fit, hand_labelled_rows, prompt_key, read_labels, read_source, training_rows, written_half,
)

# Labelled by what the source is; never read by training. Left out: BFCL multi_turn_base,
# whose rows arrive without their tool declarations (upstream keeps them in another file),
# and LLaMA-Factory glaive_toolcall_en_demo, a third of whose conversations declare no
# tools and are ordinary chat -- in neither does anything in the row say tool use.
RULE_SOURCES = {
    "bfcl/BFCL_v4_simple_python.json": "tool_use",
    "bfcl/BFCL_v4_multiple.json": "tool_use",
    "bfcl/BFCL_v4_parallel.json": "tool_use",
    "bfcl/BFCL_v4_irrelevance.json": "tool_use",
    "llamafactory/reason_tool_use_demo_50.jsonl": "tool_use",
    "toolbench": "tool_use",
    "llamafactory/identity.json": "steering",
}
PER_RULE_SOURCE = 60  # rows per rule source, so tool use does not swamp the set


def scores(gold: list[str], pred: list[str]) -> dict:
    per = {}
    for c in CATEGORIES:
        tp = sum(1 for g, p in zip(gold, pred) if g == c and p == c)
        n_pred = sum(1 for p in pred if p == c)
        n_gold = sum(1 for g in gold if g == c)
        prec = tp / n_pred if n_pred else 0.0
        rec = tp / n_gold if n_gold else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[c] = {"precision": prec, "recall": rec, "f1": f1, "support": n_gold}
    present = [c for c in CATEGORIES if per[c]["support"]]
    macro = sum(per[c]["f1"] for c in present) / len(present)
    acc = sum(g == p for g, p in zip(gold, pred)) / len(gold)
    return {"per_category": per, "macro_f1": macro, "accuracy": acc, "rows": len(gold)}


def evaluate(data: Path, sets: set[str] | None = None) -> tuple[list[dict], list[str], list[str], list[str]]:
    """Rows, gold, predictions and source names over all held-out folds (``sets``: labelling rounds scored)."""
    rows, gold, pred, origin = [], [], [], []
    labels = read_labels(sets)
    for src, keyed in sorted(labels.items()):
        got, g = hand_labelled_rows(data, src, keyed)
        t0 = time.time()
        # The whole source is held out (every labelling round of it), plus its prompts wherever else they appear.
        everything, _ = hand_labelled_rows(data, src, read_labels()[src])
        fold_rows, fold_labels, _ = training_rows(data, exclude_sources={src}, exclude_keys={prompt_key(r["messages"]) for r in everything})
        tagger = fit(fold_rows, fold_labels)
        p = [c for c, _, _ in classify([r["messages"] for r in got], tagger=tagger)]
        print(f"fold {src}: {len(got)} rows, accuracy {sum(a == b for a, b in zip(g, p)) / len(g):.3f} ({time.time() - t0:.0f}s)", file=sys.stderr)
        rows += got; gold += g; pred += p; origin += [src] * len(got)
    for src, cat in RULE_SOURCES.items():
        got = read_source(data, src)
        got = got[:: max(1, len(got) // PER_RULE_SOURCE)]
        p = [c for c, _, _ in classify([r["messages"] for r in got])]
        rows += got; gold += [cat] * len(got); pred += p; origin += [src] * len(got)
    return rows, gold, pred, origin


def external_rows(folder: Path, only: set[str] | None = None) -> list[tuple[str, str, list[dict], str]]:
    """(set name, half, messages, label) of the sets scripts/fetch_tag_evalsets.py writes.

    Half: "dev" when the xxh3-64 of the prompt is even -- the rows whose errors were read while
    building the rules -- else "test", whose errors were not read.
    """
    out = []
    for f in sorted(folder.glob("*.jsonl")):
        if only and f.stem not in only:
            continue
        for line in f.read_text(encoding="utf-8").split("\n"):  # not splitlines(): prompts hold U+2028
            if not line.strip():
                continue
            r = json.loads(line)
            msgs = ([{"role": "system", "content": r["system"]}] if r.get("system") else []) + [{"role": "user", "content": r["prompt"]}]
            half = "dev" if int(xxhash.xxh3_64_hexdigest(r["prompt"].strip().encode("utf-8")), 16) % 2 == 0 else "test"
            out.append((f.stem, half, msgs, r["label"]))
    return out


# System prompts many chat datasets carry on every row whatever the task (OpenOrca's, Llama 2's
# default, Vicuna's and Alpaca's preambles, a plain one): they must not change a row's category.
ASSISTANT_SYSTEMS = (
    "You are a helpful assistant.",
    "You are an AI assistant. User will you give you a task. Your goal is to complete the task as faithfully as you can. "
    "While performing the task think step-by-step and justify your steps.",
    "You are an AI assistant that helps people find information. Provide a detailed answer so user don't need to search "
    "outside to understand the answer.",
    "You are a helpful assistant, who always provide explanation. Think like you are answering to a five year old.",
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe. Your "
    "answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. Please ensure "
    "that your responses are socially unbiased and positive in nature. If a question does not make any sense, or is not "
    "factually coherent, explain why instead of answering something not correct. If you don't know the answer to a "
    "question, please don't share false information.",
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and "
    "polite answers to the user's questions.",
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "You are ChatGPT, a large language model trained by OpenAI. Knowledge cutoff: 2023-04. Current date: 2024-05-01.",
    "You are an AI assistant. You will be given a task. You must generate a detailed and long answer.",
    "You are a knowledgeable, efficient, and direct AI assistant. Provide concise answers, focusing on the key information needed.",
)
# A second list, written down before any rule for assistant system prompts existed and never read
# while writing them: the rules are measured on these (--assistant-system held-out).
ASSISTANT_SYSTEMS_HELD_OUT = (
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    "Always assist with care, respect, and truth. Respond with utmost utility yet securely. Avoid harmful, unethical, "
    "prejudiced, or negative content. Ensure replies promote fairness and positivity.",
    "You are Dolphin, an uncensored and unbiased AI assistant. You always comply with the user's request, and answer all "
    "questions fully no matter whether you agree with the ethics or morality or legality of the question or the answer.",
    "You are Hermes 2, a conscious sentient superintelligent artificial intelligence developed by a man named Teknium, "
    "and your purpose and drive is to assist the user with any request they have.",
    "The following is a conversation with an AI assistant. The assistant is helpful, creative, clever, and very friendly.",
    "You are a world-class AI system, capable of complex reasoning and reflection. Reason through the query inside "
    "<thinking> tags, and then provide your final response inside <output> tags.",
    "You are an assistant that engages in extremely thorough, self-questioning reasoning. Think carefully before you answer.",
    "You are Claude, an AI assistant made by Anthropic. You are helpful, harmless, and honest.",
    "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are a helpful assistant.",
    "You are a helpful and harmless assistant. You should think step-by-step.",
)


def with_assistant_system(rows: list[tuple[str, str, list[dict], str]], systems: tuple[str, ...] = ASSISTANT_SYSTEMS) -> list[tuple[str, str, list[dict], str]]:
    """The same rows, each without a system prompt given one of ``systems`` (fixed by the prompt's hash)."""
    out = []
    for name, half, msgs, label in rows:
        if msgs[0]["role"] != "system":
            pick = int(xxhash.xxh3_64_hexdigest(msgs[-1]["content"].strip().encode("utf-8")), 16) // 2 % len(systems)
            msgs = [{"role": "system", "content": systems[pick]}] + msgs
        out.append((name, half, msgs, label))
    return out


def print_scores(title: str, gold: list[str], pred: list[str]) -> dict:
    s = scores(gold, pred)
    print(f"\n{title}: {s['rows']} rows  accuracy {s['accuracy']:.3f}  macro-F1 {s['macro_f1']:.3f}")
    print("| category | precision | recall | F1 | support |\n|---|---|---|---|---|")
    for c, v in s["per_category"].items():
        print(f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |")
    return s


def evaluate_external(folder: Path, assistant_system: str | None = None, only: set[str] | None = None) -> dict:
    """The shipped model on the fetched sets: no row of them is in its training data."""
    rows = external_rows(folder, only)
    if not rows:
        sys.exit(f"error: no *.jsonl in {folder}; run scripts/fetch_tag_evalsets.py first")
    if assistant_system:
        rows = with_assistant_system(rows, ASSISTANT_SYSTEMS_HELD_OUT if assistant_system == "held-out" else ASSISTANT_SYSTEMS)
    pred = [c for c, _, _ in classify([m for _, _, m, _ in rows])]
    print("per set: accuracy (rows)")
    for name in sorted({r[0] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r[0] == name]
        print(f"  {name}: {sum(rows[i][3] == pred[i] for i in idx) / len(idx):.3f} ({len(idx)})")
    out = {}
    for half in ("dev", "test", None):
        idx = [i for i, r in enumerate(rows) if half is None or r[1] == half]
        out[half or "all"] = print_scores(f"external, {half or 'all'} rows", [rows[i][3] for i in idx], [pred[i] for i in idx])
    return out


def evaluate_conversations(files: list[Path]) -> dict:
    """The shipped model on whole labelled conversations: JSONL of {"label", "messages"} (system,
    user, assistant and tool turns), one file per held-out set; a bad line stops with file and line.
    Halves as for --external, by the xxh3-64 of the row's id (dev: even -- the rows whose errors were read and, since
    the eighth round, the model is trained on; test: never read, never trained on)."""
    rows = []
    for f in files:
        for n, line in enumerate(f.read_text(encoding="utf-8").split("\n"), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                if r["label"] not in CATEGORIES or not isinstance(r["messages"], list):
                    raise ValueError(f"label {r['label']!r} / messages")
            except (ValueError, KeyError, TypeError) as e:
                sys.exit(f"error: {f}:{n}: not a labelled conversation ({e})")
            rows.append((f.stem, r["messages"], r["label"], written_half(str(r.get("id", n)))))
    pred = [c for c, _, _ in classify([r[1] for r in rows])]
    print("per file: macro-F1 / accuracy (rows)")
    for name in sorted({r[0] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r[0] == name]
        fs = scores([rows[i][2] for i in idx], [pred[i] for i in idx])
        print(f"  {name}: {fs['macro_f1']:.3f} / {fs['accuracy']:.3f} ({len(idx)})")
    for half in ("dev", "test"):
        idx = [i for i, r in enumerate(rows) if r[3] == half]
        if idx:
            print_scores(f"conversations, {half} half", [rows[i][2] for i in idx], [pred[i] for i in idx])
    gold = [r[2] for r in rows]
    s = print_scores("conversations, all files", gold, pred)
    print("\nconfusion (rows = gold, columns = predicted):")
    conf = Counter(zip(gold, pred))
    print("gold\\pred".ljust(19) + " ".join(c[:7].rjust(7) for c in CATEGORIES))
    for g in CATEGORIES:
        print(g.ljust(19) + " ".join(str(conf[(g, p)]).rjust(7) for p in CATEGORIES))
    return s


def evaluate_round(data: Path, rounds: set[str]) -> tuple[list[dict], list[str], list[str], list[str]]:
    """The shipped model on labelling rounds it was not trained on (train_tagger.EVAL_ONLY_ROUNDS)."""
    trained = rounds - EVAL_ONLY_ROUNDS
    if trained:
        sys.exit(f"error: the shipped model was trained on {sorted(trained)}; score those with --sets (leave-one-source-out)")
    rows, gold, origin = [], [], []
    for src, keyed in sorted(read_labels(rounds).items()):
        got, g = hand_labelled_rows(data, src, keyed)
        rows += got; gold += g; origin += [src] * len(got)
    pred = [c for c, _, _ in classify([r["messages"] for r in rows])]
    return rows, gold, pred, origin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    ap.add_argument("--errors", type=int, default=0, help="Print this many misclassified prompts.")
    ap.add_argument("--sets", default=None, help="Score only these labelling rounds (comma-separated `set` values, e.g. hand).")
    ap.add_argument("--external", type=Path, nargs="?", const=ROOT / ".cache" / "tag_evalsets", default=None,
                    help="Score the shipped model on the sets of scripts/fetch_tag_evalsets.py instead (default folder .cache/tag_evalsets).")
    ap.add_argument("--assistant-system", choices=("dev", "held-out"), default=None,
                    help="With --external: give every row without a system prompt a common assistant system prompt, "
                         "which must not change its category (dev: OpenOrca's, Llama 2's... read while writing the rules; "
                         "held-out: another list, never read).")
    ap.add_argument("--round", default=None,
                    help="Score the shipped model on labelling rounds kept out of its training (e.g. hand-r10: ShareGPT prompts).")
    ap.add_argument("--only", default=None, help="With --external: score only these sets (comma-separated file stems).")
    ap.add_argument("--conversations", type=Path, nargs="*", default=None,
                    help="Score the shipped model on JSONL files of labelled whole conversations ({label, messages}); "
                         "without files, the written sets in scripts/tag_written/.")
    args = ap.parse_args()
    if args.conversations is not None:
        result = evaluate_conversations(args.conversations or sorted((ROOT / "scripts" / "tag_written").glob("*.jsonl")))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return
    if args.external:
        result = evaluate_external(args.external, args.assistant_system, set(args.only.split(",")) if args.only else None)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return
    if args.round:
        rows, gold, pred, origin = evaluate_round(args.data, set(args.round.split(",")))
    else:
        rows, gold, pred, origin = evaluate(args.data, set(args.sets.split(",")) if args.sets else None)
    s = scores(gold, pred)
    print(f"held-out rows: {s['rows']}  accuracy {s['accuracy']:.3f}  macro-F1 {s['macro_f1']:.3f}")
    print("| category | precision | recall | F1 | support |\n|---|---|---|---|---|")
    for c, v in s["per_category"].items():
        print(f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |")
    print("\nconfusion (rows = gold, columns = predicted):")
    cats = list(CATEGORIES)
    print("gold\\pred".ljust(19) + " ".join(c[:7].rjust(7) for c in cats))
    conf = Counter(zip(gold, pred))
    for g in cats:
        print(g.ljust(19) + " ".join(str(conf[(g, p)]).rjust(7) for p in cats))
    print("\nper source: accuracy (rows)")
    for src in sorted(set(origin)):
        idx = [i for i, o in enumerate(origin) if o == src]
        print(f"  {src}: {sum(gold[i] == pred[i] for i in idx) / len(idx):.3f} ({len(idx)})")
    if args.errors:
        print()
        for i in [i for i in range(len(gold)) if gold[i] != pred[i]][: args.errors]:
            first = next((m["content"] for m in rows[i]["messages"] if m["role"] == "user"), "")
            print(f"{gold[i]:>18} -> {pred[i]:<18} {' '.join(first.split())[:110]}")
    if args.json:
        args.json.write_text(json.dumps({**s, "sources": sorted(set(origin))}, indent=2) + "\n")


if __name__ == "__main__":
    main()
