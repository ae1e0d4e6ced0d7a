"""Pack: what a trainer loads must be exactly the ChatML rendering, masked and balanced."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.errors import CurationError
from curation.ingest import ingest_paths
from curation.io import conversations_from_rows
from curation.pack import PackConfig, best_fit_decreasing, pack_table, write_pack_dir
from curation.render import IGNORE, render, tokenize_table
from curation.tokenizer import LLAMA3_SHA256, TiktokenTokenizer, llama3_model_path, load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
HF_TOKENIZER_JSON = llama3_model_path().with_name("tokenizer.json")  # Meta's Llama 3 in HF form, same package
# A mix of shapes: single turn, math, roleplay, multi-turn trees, Hermes tool calls, long agent traces.
SOURCES = {
    "gsm8k/train.jsonl": "math",
    "codealpaca/code_alpaca_2k.json": "coding",
    "gpteacher/roleplay-simple-deduped-roleplay-instruct.json": "roleplay",
    "oasst/en_100_tree.jsonl": "general",
    "llamafactory/glaive_toolcall_en_demo.json": "tool_use",
    "toolbench": "tool_use",
    "hh_rlhf/harmless-base_test.jsonl": "steering",
}


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def real_table(shared_data):
    import pyarrow as pa

    parts = [ingest_paths([shared_data / p], category=c).kept for p, c in SOURCES.items()]
    return pa.concat_tables(parts)


def chatml_text(messages: list[dict]) -> str:
    return "<|begin_of_text|>" + "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)


def conv(cid: str, *turns: tuple[str, str], category: str | None = "general") -> dict:
    return {"id": cid, "messages": [{"role": r, "content": c} for r, c in turns], "source": "test", "category": category}


# ----------------------------------------------------------------------------- tokenizer


def test_llama3_special_tokens_are_single_tokens_at_their_ids(tok):
    assert tok.sha256 == LLAMA3_SHA256
    expected = {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|eot_id|>": 128009,
                "<|im_start|>": 128002, "<|im_end|>": 128003, "<|reserved_special_token_250|>": 128255}
    for token, token_id in expected.items():
        assert tok.special(token) == token_id
        assert tok.encode_with_special(token) == [token_id]
    assert tok.vocab_size == 128_256
    assert tok.encode_ordinary("Hello world") == [9906, 1917]  # Meta's ids for this text


def test_special_strings_in_content_stay_text(tok):
    ids, labels = render([{"role": "user", "content": "say <|im_end|> now"}, {"role": "assistant", "content": "<|im_start|>"}], tok)
    assert list(ids).count(tok.special("<|im_end|>")) == 2  # only the two the template placed
    assert list(ids).count(tok.special("<|im_start|>")) == 2
    assert tok.decode(ids) == chatml_text([{"role": "user", "content": "say <|im_end|> now"}, {"role": "assistant", "content": "<|im_start|>"}])


def test_marker_mapping_is_configurable_and_checked(tmp_path):
    moved = load_tokenizer("llama3", {"<|im_start|>": 128010, "<|im_end|>": 128011})
    assert moved.encode_with_special("<|im_end|>") == [128011]
    with pytest.raises(CurationError, match="not a reserved token"):
        load_tokenizer("llama3", {"<|im_start|>": 128009, "<|im_end|>": 128003})  # <|eot_id|>
    with pytest.raises(CurationError, match="not a special token id"):
        load_tokenizer("llama3", {"<|im_start|>": 42, "<|im_end|>": 128003})
    with pytest.raises(CurationError, match="share one id"):
        load_tokenizer("llama3", {"<|im_start|>": 128002, "<|im_end|>": 128002})
    tampered = tmp_path / "tokenizer.model"
    data = bytearray(llama3_model_path().read_bytes())
    data[-3] = ord("9") if data[-3] != ord("9") else ord("8")
    tampered.write_bytes(bytes(data))
    with pytest.raises(CurationError, match="sha256"):
        TiktokenTokenizer(tampered, {"<|im_start|>": 128002, "<|im_end|>": 128003})


def test_hf_tokenizer_json_gives_the_same_ids_as_tiktoken(tok, real_table):
    hf = load_tokenizer(str(HF_TOKENIZER_JSON))
    assert hf.special("<|im_start|>") == 128002 and hf.encode_with_special("<|im_end|>") == [128003]
    sample = real_table.take(pa.array(random.Random(0).sample(range(real_table.num_rows), 300)))
    a, b = tokenize_table(sample, tok), tokenize_table(sample, hf)
    for x, y in zip(a.input_ids, b.input_ids):
        assert np.array_equal(x, y)
    assert hf.encode_ordinary("a <|im_end|> b") == tok.encode_ordinary("a <|im_end|> b")


# ----------------------------------------------------------------------------- rendering


def test_render_labels_cover_assistant_content_and_im_end(tok):
    messages = [
        {"role": "system", "content": "You are Hermes.\n<tools>[]</tools>"},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": '<tool_call>{"name": "calc", "arguments": {"x": "2+2"}}</tool_call>'},
        {"role": "tool", "content": "<tool_response>4</tool_response>"},
        {"role": "assistant", "content": "It is 4."},
    ]
    ids, labels = render(messages, tok)
    assert ids.dtype == np.int32 and labels.dtype == np.int32 and len(ids) == len(labels)
    assert tok.decode(ids) == chatml_text(messages)
    trained = [tok.decode(ids[s]) for s in np.ma.clump_unmasked(np.ma.masked_equal(labels, IGNORE))]
    assert trained == [m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant"]
    assert np.array_equal(labels[labels != IGNORE], ids[labels != IGNORE])


def test_tokenize_table_matches_render(tok, real_table):
    sample = real_table.slice(0, 200)
    batch = tokenize_table(sample, tok, batch_rows=64)
    for i, messages in enumerate(sample.column("messages").to_pylist()):
        ids, labels = render(messages, tok)
        assert np.array_equal(ids, batch.input_ids[i]) and np.array_equal(labels, batch.labels[i])


# ----------------------------------------------------------------------------- packing


def naive_best_fit_decreasing(lengths, capacity):
    loads = []
    for n in sorted(lengths, reverse=True):
        fits = [b for b, load in enumerate(loads) if load + n <= capacity]
        if fits:
            best = max(fits, key=lambda b: loads[b])
            loads[best] += n
        else:
            loads.append(n)
    return sorted(loads)


def test_best_fit_decreasing_matches_the_quadratic_definition():
    rng = random.Random(3)
    for capacity in (64, 1000):
        lengths = [rng.randint(1, capacity) if rng.random() < 0.3 else rng.randint(1, capacity // 8) for _ in range(700)]
        bins = best_fit_decreasing(lengths, capacity)
        assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
        loads = sorted(sum(lengths[i] for i in b) for b in bins)
        assert max(loads) <= capacity
        assert loads == naive_best_fit_decreasing(lengths, capacity)


@pytest.fixture(scope="module")
def packed_dir(tok, real_table, tmp_path_factory):
    out = tmp_path_factory.mktemp("pack") / "packed"
    result = pack_table(real_table, PackConfig(seq_len=4096, shards=3, seed=1), tok)
    write_pack_dir(result, out)
    return out, result


def test_trainer_view_of_the_shards(tok, real_table, packed_dir):
    """Read as a trainer: cu_seqlens from position_ids, each span is its conversation, labels exact."""
    out, result = packed_dir
    messages_of = dict(zip(real_table.column("id").to_pylist(), real_table.column("messages").to_pylist()))
    samples = pq.read_table(out / "samples.parquet").to_pylist()
    conversation_of = {s["sample_id"]: s["conversation_id"] for s in samples}
    whole = datasets.load_from_disk(str(out))
    files = sorted(out.glob("*.arrow"))
    assert len(files) == 3 and sum(datasets.Dataset.from_file(str(f)).num_rows for f in files) == whole.num_rows
    seen = []
    for f in files:
        shard = datasets.Dataset.from_file(str(f)).with_format("numpy")
        for row in shard:
            ids, labels, pos = row["input_ids"], row["labels"], row["position_ids"]
            assert len(ids) == len(labels) == len(pos) == row["num_tokens"] <= 4096  # no padding
            starts = np.flatnonzero(pos == 0)
            cu_seqlens = np.append(starts, len(pos))
            assert np.array_equal(np.diff(cu_seqlens), row["seq_lens"])
            assert row["num_loss_tokens"] == np.count_nonzero(labels != IGNORE)
            for sid, a, b in zip(row["sample_ids"], cu_seqlens[:-1], cu_seqlens[1:]):
                assert np.array_equal(pos[a:b], np.arange(b - a))
                messages = messages_of[conversation_of[sid]]
                assert tok.decode(ids[a:b]) == chatml_text(messages)
                span = labels[a:b]
                trained = [tok.decode(ids[a:b][s]) for s in np.ma.clump_unmasked(np.ma.masked_equal(span, IGNORE))]
                assert trained == [m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant"]
                seen.append(sid)
    assert sorted(seen) == sorted(s["sample_id"] for s in samples)
    assert len(seen) == len(set(seen))


def test_every_conversation_is_packed_or_rejected_with_a_reason(tok, real_table, packed_dir):
    _, result = packed_dir
    assert result.kept.num_rows + result.rejected.num_rows == real_table.num_rows
    rejected = result.rejected.to_pylist()
    assert {r["reason"] for r in rejected} == {"no_trainable_tokens", "too_long"}  # prompts only; long ToolBench traces
    for r in rejected:
        if r["reason"] == "no_trainable_tokens":
            assert not any(m["role"] == "assistant" for m in r["messages"])
        else:
            n = int(r["detail"].split()[0])
            assert n > 4096 and n == len(render(r["messages"], tok)[0])


def test_efficiency_and_shard_balance(packed_dir):
    out, result = packed_dir
    stats = json.loads((out / "pack_stats.json").read_text())
    assert stats["num_packs"] <= 1.002 * stats["lower_bound_packs"] + 1
    assert stats["efficiency"] >= 0.995
    assert stats["tokenizer"] == {"name": "llama3", "sha256": LLAMA3_SHA256}
    shards = stats["shards"]
    assert [s["file"] for s in shards] == sorted(p.name for p in out.glob("*.arrow"))
    tokens = [s["tokens"] for s in shards]
    assert max(tokens) - min(tokens) <= max(0.001 * max(tokens), stats["seq_len"])
    whole = {c: sum(s["category_tokens"].get(c, 0) for s in shards) / sum(tokens) for c in shards[0]["category_tokens"]}
    assert len(whole) == 6
    for s in shards:
        for c, share in whole.items():
            assert abs(s["category_tokens"].get(c, 0) / s["tokens"] - share) <= 0.01
    for s, f in zip(shards, sorted(out.glob("*.arrow"))):
        shard = datasets.Dataset.from_file(str(f))
        assert shard.num_rows == s["packs"] and sum(shard["num_tokens"]) == s["tokens"]


def test_seed_shuffles_packs_reproducibly(tok, real_table):
    small = real_table.slice(0, 3000)
    a = pack_table(small, PackConfig(seq_len=2048, seed=5), tok).shards[0].column("sample_ids").to_pylist()
    b = pack_table(small, PackConfig(seq_len=2048, seed=5), tok).shards[0].column("sample_ids").to_pylist()
    c = pack_table(small, PackConfig(seq_len=2048, seed=6), tok).shards[0].column("sample_ids").to_pylist()
    assert a == b and a != c
    assert sorted(map(tuple, a)) == sorted(map(tuple, c))


# ----------------------------------------------------------------------------- oversize


def long_conversation(words: int) -> dict:
    text = " ".join(["token"] * words)
    return conv(
        "long",
        ("system", "You are Hermes."),
        ("user", "first " + text), ("assistant", "answer one " + text),
        ("user", "second " + text), ("assistant", "answer two " + text),
        ("user", "third " + text), ("assistant", "answer three " + text),
        ("user", "a question without answer"),
    )


def test_oversize_drop_truncate_split(tok):
    rows = [long_conversation(60), conv("short", ("user", "hi"), ("assistant", "hello")), conv("prompt", ("user", "only a prompt"))]
    table = conversations_from_rows(rows)
    full = len(render(rows[0]["messages"], tok)[0])
    seq_len = 300
    assert full > seq_len

    dropped = pack_table(table, PackConfig(seq_len=seq_len, oversize="drop"), tok)
    reasons = dict(zip(dropped.rejected.column("id").to_pylist(), dropped.rejected.column("reason").to_pylist()))
    assert reasons == {"long": "too_long", "prompt": "no_trainable_tokens"}
    assert f"{full} tokens > seq_len {seq_len}" in dropped.rejected.column("detail").to_pylist()[0]
    assert dropped.stats["dropped"] == {"no_trainable_tokens": 1, "too_long": 1}

    truncated = pack_table(table, PackConfig(seq_len=seq_len, oversize="truncate"), tok)
    assert truncated.kept.column("id").to_pylist() == ["long", "short"]
    samples = truncated.samples.to_pylist()
    cut = next(s for s in samples if s["conversation_id"] == "long")
    assert cut["oversize"] == "truncated" and cut["num_tokens"] <= seq_len
    assert truncated.stats["oversize"]["truncated"] == 1 and truncated.stats["oversize"]["tokens_cut"] == full - cut["num_tokens"]
    packed = truncated.shards[0].to_pylist()
    text = next(tok.decode(r["input_ids"][a:a + n]) for r in packed
                for sid, a, n in zip(r["sample_ids"], np.cumsum([0] + r["seq_lens"][:-1]), r["seq_lens"]) if sid == "long")
    assert text.endswith("<|im_end|>\n") and "answer two" in text and "answer three" not in text

    split = pack_table(table, PackConfig(seq_len=seq_len, oversize="split"), tok)
    pieces = [s for s in split.samples.to_pylist() if s["conversation_id"] == "long"]
    assert [p["sample_id"] for p in pieces] == ["long#0", "long#1"]
    assert all(p["num_tokens"] <= seq_len and p["oversize"].startswith("split") for p in pieces)
    texts = {sid: tok.decode(r["input_ids"][a:a + n]) for r in split.shards[0].to_pylist()
             for sid, a, n in zip(r["sample_ids"], np.cumsum([0] + r["seq_lens"][:-1]), r["seq_lens"])}
    for answer in ["answer one", "answer two", "answer three"]:
        assert sum(answer in texts[p["sample_id"]] for p in pieces) == 1  # every answer trained once
    for p in pieces:
        piece = texts[p["sample_id"]]
        assert piece.startswith("<|begin_of_text|><|im_start|>system\nYou are Hermes.<|im_end|>\n<|im_start|>user\n")
        assert piece.endswith("<|im_end|>\n") and "without answer" not in piece
    assert split.stats["oversize"]["tokens_left_out"] > 0  # the unanswered last user turn is counted
    assert split.kept.num_rows + split.rejected.num_rows == 3


def test_oversize_that_cannot_be_rescued_is_rejected(tok):
    table = conversations_from_rows([long_conversation(400)])
    for mode in ("truncate", "split"):
        result = pack_table(table, PackConfig(seq_len=200, oversize=mode), tok)
        assert result.rejected.column("reason").to_pylist() == ["too_long"]
        assert result.kept.num_rows == 0 and result.stats["num_packs"] == 0


# ----------------------------------------------------------------------------- CLI


def curate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curation", *args], cwd=cwd, capture_output=True, text=True)


def test_cli_pack_with_recipe_and_flags(tmp_path, real_table):
    src = tmp_path / "in.parquet"
    pq.write_table(real_table.slice(0, 2000), src)
    (tmp_path / "recipe.yaml").write_text("pack:\n  seq_len: 2048\n  shards: 4\n  seed: 3\n")
    done = curate("pack", str(src), "--out", str(tmp_path / "out"), "--config", str(tmp_path / "recipe.yaml"), "--shards", "2", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    stats = json.loads((tmp_path / "out" / "pack_stats.json").read_text())
    assert stats["seq_len"] == 2048 and len(stats["shards"]) == 2 and stats["seed"] == 3
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["rows_in"] == 2000 == manifest["rows_out"] + manifest["rows_rejected"]
    assert pq.read_table(tmp_path / "out" / "rejects.parquet").num_rows == manifest["rows_rejected"]
    assert datasets.load_from_disk(str(tmp_path / "out")).num_rows == stats["num_packs"]

    bad = curate("pack", str(src), "--out", str(tmp_path / "out2"), "--oversize", "squeeze", cwd=ROOT)
    assert bad.returncode == 2 and "error: --oversize: " in bad.stderr and "Traceback" not in bad.stderr
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    busy = curate("pack", str(src), "--out", str(tmp_path / "busy"), cwd=ROOT)
    assert busy.returncode == 2 and "not a pack output" in busy.stderr
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_repeated_and_empty_contents_render_like_single_conversations(tok):
    rows = [conv(f"c{i}", ("system", "shared system prompt"), ("user", "same question"), ("assistant", ["", "a", "same question"][i % 3]))
            for i in range(7)]
    table = conversations_from_rows(rows)
    batch = tokenize_table(table, tok, batch_rows=3)
    for i, row in enumerate(rows):
        ids, labels = render(row["messages"], tok)
        assert np.array_equal(ids, batch.input_ids[i]) and np.array_equal(labels, batch.labels[i])
