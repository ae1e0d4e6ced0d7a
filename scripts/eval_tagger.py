"""Measure the offline tagger on sources it never saw in training.

    .venv/bin/python scripts/eval_tagger.py [--data ../shared/data] [--json out.json]

Evaluation rows: the ``heldout`` hand labels of scripts/tag_labels.tsv (AlpacaEval,
Arena-Hard, self-instruct user-oriented, OASST, InstructionWild prompts, labelled by
reading each prompt, before and independently of the rules) plus two tool-use sources
labelled by what they are (BFCL, LLaMA-Factory reason_tool_use). Prints per-category
precision / recall / F1, macro-F1, the confusion matrix and per-source accuracy.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from curation.io import conversations_from_rows  # noqa: E402
from curation.meta import load_meta  # noqa: E402
from curation.schema import CATEGORIES  # noqa: E402
from curation.tag import TagConfig, tag_table  # noqa: E402
from train_tagger import HAND_LABELLED_TRAIN, SOURCE_LABELS, prompt_key, read_labels, read_source  # noqa: E402

SOURCE_LABELLED_HELDOUT = {"bfcl": "tool_use", "llamafactory/reason_tool_use_demo_50.jsonl": "tool_use"}
BFCL_SAMPLE = 200  # every 6th BFCL row keeps tool use from swamping the set


def heldout_rows(data: Path) -> tuple[list[dict], list[str], list[str]]:
    """Rows, gold labels and source names; one row per labelled prompt."""
    rows, gold, origin = [], [], []
    hand = read_labels("heldout")
    train_keys = {k for (src, k) in read_labels("train")}
    by_source: dict[str, dict[str, str]] = defaultdict(dict)
    for (src, key), cat in hand.items():
        assert src not in SOURCE_LABELS and src not in HAND_LABELLED_TRAIN, f"{src} is a training source"
        by_source[src][key] = cat
    seen: set[str] = set()
    for src, labels in sorted(by_source.items()):
        for r in read_source(data, src):
            key = prompt_key(r["messages"])
            if key in labels and key not in seen and key not in train_keys:
                seen.add(key)
                rows.append(r)
                gold.append(labels[key])
                origin.append(src)
    for src, cat in SOURCE_LABELLED_HELDOUT.items():
        got = read_source(data, src)
        if src == "bfcl":
            got = got[:: max(1, len(got) // BFCL_SAMPLE)]
        rows += got
        gold += [cat] * len(got)
        origin += [src] * len(got)
    return rows, gold, origin


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    ap.add_argument("--errors", type=int, default=0, help="Print this many misclassified prompts.")
    args = ap.parse_args()
    rows, gold, origin = heldout_rows(args.data)
    for r in rows:
        r["category"] = None
    result = tag_table(conversations_from_rows(rows), TagConfig())
    pred = result.kept.column("category").to_pylist()
    how = [load_meta(m)["category_source"] for m in result.kept.column("meta").to_pylist()]
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
    print("decided by:", dict(Counter(how)))
    if args.errors:
        print()
        for i in [i for i in range(len(gold)) if gold[i] != pred[i]][: args.errors]:
            first = next((m["content"] for m in rows[i]["messages"] if m["role"] == "user"), "")
            print(f"{gold[i]:>18} -> {pred[i]:<18} {' '.join(first.split())[:110]}")
    if args.json:
        args.json.write_text(json.dumps({**s, "sources": sorted(set(origin))}, indent=2) + "\n")


if __name__ == "__main__":
    main()
