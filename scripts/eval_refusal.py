"""Measure the refusal detector on the labelled development sets in the shared data.

Labels (all automatic except the hand labels in scripts/refusal_hand_labels.json):
- refusal_direction: refusal when the substring judge AND LlamaGuard-2 (when present)
  both say "not jailbroken"; compliance when both say "jailbroken"; split votes are
  reported separately, not scored.
- jailbreakbench: ``jailbroken`` true -> compliance; false -> refusal (noisy: a judge's
  "not jailbroken" is sometimes an evasive or harmless answer, not a refusal).
- gpteacher roleplay: every reply taken as compliance (characters apologise in-role).
- hand: items whose automatic label we hand-checked, keyed by file and index.

Usage: .venv/bin/python scripts/eval_refusal.py [--data ../shared/data] [--threshold 0.5]
       [--dump disagreements.jsonl] [--only-hand]
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curation.refusal import DEFAULT_THRESHOLD, refusal_score  # noqa: E402

HAND_LABELS = ROOT / "scripts" / "refusal_hand_labels.json"


def refusal_direction(data: Path):
    for f in sorted(glob.glob(str(data / "refusal_direction/completions/*.json"))):
        rel = str(Path(f).relative_to(data))
        for i, c in enumerate(json.load(open(f))["completions"]):
            sub, guard = c.get("is_jailbreak_substring_matching"), c.get("is_jailbreak_llamaguard2")
            if sub == 0 and guard in (0, None):
                label = 1
            elif sub == 1 and guard in (1, None):
                label = 0
            else:
                label = None  # the two judges disagree
            yield "refusal_direction", rel, i, c["response"], label


def jailbreakbench(data: Path):
    for f in sorted(glob.glob(str(data / "jailbreakbench/*.json"))):
        rel = str(Path(f).relative_to(data))
        for i, c in enumerate(json.load(open(f))["jailbreaks"]):
            if c.get("response"):
                yield "jailbreakbench", rel, i, c["response"], 0 if c["jailbroken"] else 1


def roleplay(data: Path):
    rel = "gpteacher/roleplay-simple-deduped-roleplay-instruct.json"
    for i, r in enumerate(json.load(open(data / rel))):
        yield "gpteacher_roleplay", rel, i, r["response"], 0


def natural(data: Path):
    """Unlabelled natural replies: only the flag rate is reported (and hand labels apply)."""
    for f in sorted(glob.glob(str(data / "alpaca_eval/*.json"))):
        rel = str(Path(f).relative_to(data))
        for i, r in enumerate(json.load(open(f))):
            yield "alpaca_eval", rel, i, r["output"] if isinstance(r["output"], str) else "", None
    rel = "hh_rlhf/harmless-base_test.jsonl"
    for i, line in enumerate(open(data / rel, encoding="utf-8")):
        chosen = json.loads(line)["chosen"]
        last = chosen.rsplit("\n\nAssistant:", 1)[-1].strip()
        yield "hh_rlhf_last_turn", rel, i, last, None


def prf(tp: int, fp: int, fn: int) -> tuple[float, float]:
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 1.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    ap.add_argument("--dump", type=Path, help="write disagreements (and split votes) as JSONL")
    args = ap.parse_args()

    hand = {(h["file"], h["index"]): h["label"] for h in json.loads(HAND_LABELS.read_text())} if HAND_LABELS.exists() else {}
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    dump = open(args.dump, "w", encoding="utf-8") if args.dump else None
    for gen in (refusal_direction, jailbreakbench, roleplay, natural):
        for name, rel, idx, text, label in gen(args.data):
            score, evidence = refusal_score(text)
            pred = int(score >= args.threshold)
            c = counts[name]
            c["n"] += 1
            c["flagged"] += pred
            if (rel, idx) in hand:
                h = hand[(rel, idx)]
                hc = counts["hand_checked"]
                hc["n"] += 1
                hc["flagged"] += pred
                hc["tp" if pred and h else "fp" if pred else "fn" if h else "tn"] += 1
                if label is not None and label != h:
                    c["auto_label_wrong"] += 1
            if label is None:
                c["unlabelled"] += 1
                if dump and (pred or name == "refusal_direction") and (rel, idx) not in hand:
                    dump.write(json.dumps({"set": name, "file": rel, "index": idx, "auto": None, "pred": pred,
                                           "score": score, "evidence": evidence, "text": text[:600]}) + "\n")
                continue
            c["tp" if pred and label else "fp" if pred else "fn" if label else "tn"] += 1
            if dump and pred != label and (rel, idx) not in hand:
                dump.write(json.dumps({"set": name, "file": rel, "index": idx, "auto": label, "pred": pred,
                                       "score": score, "evidence": evidence, "text": text[:600]}) + "\n")
    print(f"threshold {args.threshold}")
    print(f"{'set':22} {'n':>6} {'flagged':>8} {'tp':>5} {'fp':>5} {'fn':>5} {'tn':>6} {'precision':>9} {'recall':>7}")
    total = defaultdict(int)
    for name, c in counts.items():
        p, r = prf(c["tp"], c["fp"], c["fn"])
        labelled = c["tp"] + c["fp"] + c["fn"] + c["tn"]
        shown = f"{p:9.3f} {r:7.3f}" if labelled else f"{'-':>9} {'-':>7}"
        print(f"{name:22} {c['n']:6} {c['flagged']:8} {c['tp']:5} {c['fp']:5} {c['fn']:5} {c['tn']:6} {shown}"
              + (f"  (unlabelled {c['unlabelled']})" if c["unlabelled"] else "")
              + (f"  (auto label wrong on {c['auto_label_wrong']} hand-checked)" if c["auto_label_wrong"] else ""))
        if name in ("refusal_direction", "jailbreakbench", "gpteacher_roleplay"):
            for k in ("tp", "fp", "fn", "tn"):
                total[k] += c[k]
    p, r = prf(total["tp"], total["fp"], total["fn"])
    print(f"{'automatic labels, all':22} {'':6} {'':8} {total['tp']:5} {total['fp']:5} {total['fn']:5} {total['tn']:6} {p:9.3f} {r:7.3f}")


if __name__ == "__main__":
    main()
