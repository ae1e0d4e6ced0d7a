"""The dedup stage on real data: exact and near duplicates, priority survivors, CLI and manifest."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from curation.dedup import (
    DedupConfig,
    dedup_table,
    key_texts,
    minhash_signatures,
    normalised_words,
    permutations,
    shingle_hashes,
    shingle_hashfunc,
    union_find,
)
from curation.io import conversations_from_rows, read_conversations, read_rejects, write_table
from curation.ingest import ingest_paths

ROOT = Path(__file__).resolve().parents[1]
CURATE = [str(Path(sys.executable).with_name("curate"))]


def conv(id_, prompt, answer, generator=None, system=None):
    msgs = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": answer},
    ]
    return {"id": id_, "messages": msgs, "source": "test", "generator": generator}


@pytest.fixture(scope="module")
def alpaca_eval(shared_data):
    return ingest_paths([shared_data / "alpaca_eval"]).kept


@pytest.fixture(scope="module")
def gsm8k_questions(shared_data):
    lines = (shared_data / "gsm8k" / "train.jsonl").read_text().splitlines()[:400]
    return [json.loads(line)["question"] for line in lines]


def _prompts(table: pa.Table) -> list[str]:
    return [" ".join(w) for w in normalised_words(key_texts(table.column("messages"), "prompt")).to_pylist()]


def test_signatures_equal_datasketch_minhash(gsm8k_questions):
    """Our numpy signatures are datasketch.MinHash's, fed the same shingle hashes."""
    from datasketch import MinHash

    words = normalised_words(pa.array(gsm8k_questions[:20] + ["hi", ""]))
    hashes, counts = shingle_hashes(words, 5)
    a, b = permutations(64, 7)
    sig = minhash_signatures(hashes, counts, a, b)
    ends = np.cumsum(counts)
    for i, (count, end) in enumerate(zip(counts, ends)):
        m = MinHash(num_perm=64, seed=7, scheme="affine32", hashfunc=shingle_hashfunc)
        m.update_batch(hashes[end - count : end].tolist())
        assert np.array_equal(sig[i], m.hashvalues), i
    assert counts[-2] == 1 and counts[-1] == 0  # "hi": one shingle of its words; "": none


def test_alpaca_eval_keeps_805_prompts_from_the_strongest_generator(alpaca_eval):
    """The bar: 12 models x 805 prompts -> 805 rows, each from the highest-priority model that answered."""
    priority = ["llama-2-70b-chat-hf", "claude-2", "alpaca-7b"]
    result = dedup_table(alpaca_eval, DedupConfig(key="prompt", near=False, priority=priority))
    assert result.kept.num_rows == 805
    assert result.kept.num_rows + result.rejected.num_rows == alpaca_eval.num_rows

    answered: dict[str, set[str]] = {}
    for prompt, gen in zip(_prompts(alpaca_eval), alpaca_eval.column("generator").to_pylist()):
        answered.setdefault(prompt, set()).add(gen)
    kept = dict(zip(_prompts(result.kept), result.kept.column("generator").to_pylist()))
    assert set(kept) == set(answered)
    for prompt, gens in answered.items():
        assert kept[prompt] == next(p for p in priority if p in gens)
    assert sorted(set(kept.values())) == ["claude-2", "llama-2-70b-chat-hf"]  # llama-2-70b lacks one prompt

    rejects = result.rejected.to_pylist()
    kept_ids = set(result.kept.column("id").to_pylist())
    assert {r["reason"] for r in rejects} == {"exact_duplicate"} and {r["stage"] for r in rejects} == {"dedup"}
    assert all(r["detail"].split()[1].rstrip(":") in kept_ids for r in rejects)
    assert result.stats["cluster_size_histogram"] == {"11": 1, "12": 804}


def test_alpaca_eval_near_duplicate_prompts_merge_templated_recipes(alpaca_eval):
    """With near dedup on, the two recipe prompts that differ only in the dish name merge."""
    result = dedup_table(alpaca_eval, DedupConfig(key="prompt", priority=["gpt4_1106_preview"]))
    assert result.kept.num_rows == 803
    assert set(result.kept.column("generator").to_pylist()) == {"gpt4_1106_preview"}
    near = [r for r in result.rejected.to_pylist() if r["reason"] == "near_duplicate"]
    assert len(near) == 24
    assert all("I like to host guests" in r["messages"][0]["content"] for r in near)
    assert all("estimated Jaccard 0.8" in r["detail"] or "estimated Jaccard 0.9" in r["detail"] for r in near)


def test_near_duplicates_removed_distinct_rows_kept(gsm8k_questions):
    rows = [conv(f"q{i}", q, "answer") for i, q in enumerate(gsm8k_questions[:200])]
    long_q = max(gsm8k_questions[:200], key=len)
    words = long_q.split()
    words[len(words) // 2] = "zebra"
    rows.append(conv("z-edited", " ".join(words), "answer"))
    rows.append(conv("z-shouted", long_q.upper().replace(".", "!!"), "answer"))
    result = dedup_table(conversations_from_rows(rows), DedupConfig())
    rejected = {r["id"]: r for r in result.rejected.to_pylist()}
    assert set(rejected) == {"z-edited", "z-shouted"}
    original = next(r["id"] for r in rows if r["messages"][0]["content"] == long_q)
    assert rejected["z-shouted"]["reason"] == "exact_duplicate"
    assert rejected["z-edited"]["reason"] == "near_duplicate"
    assert rejected["z-edited"]["detail"].startswith(f"kept {original}: estimated Jaccard")
    assert result.stats["clusters"] == 1 and result.stats["cluster_size_histogram"] == {"3": 1}


def test_survivor_priority_then_assistant_words_then_id():
    rows = [
        conv("a", "Tell me a joke", "short", "weak"),
        conv("b", "tell me a JOKE!", "a much longer answer here", "weak"),
        conv("c", "Tell me a joke.", "tiny", "Strong-Model"),
        conv("d", "Name a colour", "red", None),
        conv("e", "name a colour", "red", None),
        conv("f", "Name a colour", "red is a colour", "unlisted"),
    ]
    table = conversations_from_rows(rows)
    kept = dedup_table(table, DedupConfig(priority=["strong-model", "weak"])).kept.column("id").to_pylist()
    assert kept == ["c", "f"]  # listed beats unlisted; case-insensitive; unlisted and None tie -> more words
    kept = dedup_table(table, DedupConfig(priority=[])).kept.column("id").to_pylist()
    assert kept == ["b", "f"]  # no priority: more assistant words
    kept = dedup_table(table.slice(3, 2), DedupConfig()).kept.column("id").to_pylist()
    assert kept == ["d"]  # full tie: smallest id


def test_empty_and_short_keys():
    rows = [
        conv("p1", "?!", "one"),
        conv("p2", "...", "two"),
        {"id": "no-user", "messages": [{"role": "assistant", "content": "hello"}], "source": "t"},
        conv("h1", "Hello world", "x"),
        conv("h2", "Hello moon", "y"),
        conv("h3", "hello,   WORLD", "z"),
    ]
    result = dedup_table(conversations_from_rows(rows), DedupConfig())
    assert result.kept.column("id").to_pylist() == ["p1", "p2", "no-user", "h1", "h2"]
    assert result.rejected.column("id").to_pylist() == ["h3"]
    assert result.stats["empty_keys"] == 3 and result.stats["lsh_indexed"] == 2


def test_key_conversation_compares_answers_too():
    rows = [conv("x", "Same prompt", "first answer"), conv("y", "Same prompt", "a different answer entirely")]
    table = conversations_from_rows(rows)
    assert dedup_table(table, DedupConfig(key="prompt")).kept.num_rows == 1
    assert dedup_table(table, DedupConfig(key="conversation")).kept.num_rows == 2


def test_union_find_matches_connected_components():
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(0)
    n = 3000
    u, v = rng.integers(n, size=2500), rng.integers(n, size=2500)
    root = union_find(n, u, v)
    _, labels = connected_components(coo_matrix((np.ones(len(u)), (u, v)), shape=(n, n)), directed=False)
    pairs = rng.integers(n, size=(20000, 2))
    assert np.array_equal(root[pairs[:, 0]] == root[pairs[:, 1]], labels[pairs[:, 0]] == labels[pairs[:, 1]])
    assert np.all(root <= np.arange(n))


def test_cli_writes_outputs_manifest_and_reads_recipe(tmp_path, alpaca_eval):
    src = tmp_path / "in.parquet"
    write_table(alpaca_eval.slice(0, 1610), src)  # alpaca-7b and claude-2: 805 prompts each
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("dedup:\n  priority: [alpaca-7b]\n  near: false\n")
    out, rej = tmp_path / "out.parquet", tmp_path / "rej.parquet"
    proc = subprocess.run(
        CURATE + ["dedup", str(src), "--out", str(out), "--rejects", str(rej), "--config", str(recipe), "--priority", "claude-2"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    kept, rejects = read_conversations(out), read_rejects(rej)
    assert kept.num_rows == 805 and set(kept.column("generator").to_pylist()) == {"claude-2"}  # flag beats recipe
    manifest = json.loads(out.with_suffix(".manifest.json").read_text())
    assert manifest["rows_in"] == 1610 and manifest["rows_out"] == 805 and rejects.num_rows == 805
    assert manifest["rejected_by_reason"] == {"exact_duplicate": 805}
    assert manifest["stats"]["cluster_size_histogram"] == {"2": 805} and manifest["stats"]["clusters"] == 805
    assert manifest["args"]["near"] is False

    bad = subprocess.run(CURATE + ["dedup", str(src), "--out", str(out), "--threshold", "1.5"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --threshold") and "Traceback" not in bad.stderr
    recipe.write_text("dedup:\n  tresh: 0.5\n")
    bad = subprocess.run(CURATE + ["dedup", str(src), "--out", str(out), "--config", str(recipe)], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "dedup.tresh: unknown key" in bad.stderr


def test_empty_table_and_every_row_accounted(shared_data):
    from curation.io import empty_conversations

    result = dedup_table(empty_conversations(), DedupConfig())
    assert result.kept.num_rows == 0 and result.rejected.num_rows == 0 and result.stats["clusters"] == 0

    table = ingest_paths([shared_data / "gpteacher" / "toolformer-dedupe-only-dataset.json"]).kept
    result = dedup_table(table, DedupConfig(key="conversation", threshold=0.9))
    kept, rejected = set(result.kept.column("id").to_pylist()), set(result.rejected.column("id").to_pylist())
    assert not kept & rejected and kept | rejected == set(table.column("id").to_pylist())
    assert result.stats["near_duplicates"] > 0 and result.stats["confirmed_pairs"] > 0
