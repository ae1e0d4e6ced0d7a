"""evolve and respond against real HTTP servers on loopback.

- A scripted OpenAI-compatible server (below) gives hand-made rewrites and answers, so
  each elimination rule is exercised on purpose.
- The fault-injecting server (tests/fault_server.py) gives failures and cut-off replies.
- The embedded llama.cpp server with SmolLM2-135M-Instruct runs one end-to-end smoke run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.client import Endpoint, EndpointConfig
from curation.endpoint import journal_path, open_endpoint, resolve_remote
from curation.errors import CurationError
from curation.evolve import OPERATIONS, EvolveConfig, child_id, choose_operation, evolve_table, only_stop_words
from curation.io import conversations_from_rows, write_table
from curation.local_server import MODEL_NAME, local_server
from curation.meta import load_meta
from curation.prompts import load_prompt
from curation.respond import RespondConfig, load_system_prompts, parse_turns, respond_table

sys.path.insert(0, str(Path(__file__).parent))
from chat_server import ChatServer  # noqa: E402
from fault_server import FaultServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CURATE = [sys.executable, "-m", "curation"]
LONG_SORRY = "Sorry for the wait. " + " ".join(f"word{i}" for i in range(90))
GOOD_ANSWER = "Paris in the 1920s drew writers, painters and musicians to Montparnasse cafes and jazz clubs."


class ScriptedServer(ChatServer):
    """The chat server with replies from tables: ``rewrites`` maps a parent instruction to
    its rewrite (text or a (text, finish_reason) pair), ``answers`` an instruction to its
    answer, ``verdicts`` a rewrite to the information-gain check's reply."""

    def __init__(self, rewrites: dict, answers: dict, verdicts: dict | None = None, model: str = "scripted"):
        super().__init__(self._reply, model)
        self.rewrites, self.answers, self.verdicts = rewrites, answers, verdicts or {}

    def _reply(self, body: dict) -> tuple[str, str]:
        content = body["messages"][-1]["content"]
        if "#Given Prompt#:\n" in content:
            parent = content.split("#Given Prompt#:\n", 1)[1].split("\n\n#", 1)[0]
            value = self.rewrites.get(parent, f"{parent} Explain each step.")
            return value if isinstance(value, tuple) else (value, "stop")
        if "Second prompt:\n" in content:
            rewrite = content.split("Second prompt:\n", 1)[1].split("\n\nDoes the second", 1)[0]
            return self.verdicts.get(rewrite, "Different"), "stop"
        return self.answers.get(content, GOOD_ANSWER), "stop"

    def endpoint(self) -> Endpoint:
        return Endpoint(self.base_url, self.model, "unused", EndpointConfig(max_retries=1, backoff_base_s=0.01))


def seed_table(instructions: list[str], extra_rows: list[dict] = ()) -> pa.Table:
    rows = [
        {"id": f"s{i}", "messages": [{"role": "user", "content": text}], "source": "test", "category": "general"}
        for i, text in enumerate(instructions)
    ]
    return conversations_from_rows(rows + list(extra_rows))


def by_parent_instruction(result, table) -> dict[str, dict]:
    """Each seed's instruction -> its round-1 child (kept or rejected) as a dict with `reason`."""
    seeds = {r["id"]: r["messages"][0]["content"] for r in table.to_pylist()}
    out = {}
    for row in result.kept.to_pylist():
        meta = load_meta(row["meta"])
        if meta.get("round") == 1:
            out[seeds[meta["parent_id"]]] = {**row, "reason": None}
    for row in result.rejected.to_pylist():
        meta = load_meta(row["meta"])
        if meta.get("round") == 1:
            out[seeds[meta["parent_id"]]] = row
    return out


# ----------------------------------------------------------------------------- evolve


def test_each_failed_evolution_is_rejected_with_its_reason():
    rewrites = {
        "Write a poem about rain.": "#Rewritten Prompt#: Write a poem about rain in winter.",
        "Explain tides.": "Explain tides to a child using the moon and the sun.",
        "Name a colour.": "Name a colour that few people can see.",
        "Describe Paris.": "Describe Paris in the 1920s for a travel guide.",
        "Count to three.": "count to   THREE",
        "List fruits.": ("List twenty fruits grown in", "length"),
        "Apologise politely.": "Apologise politely to a customer for a late order.",
    }
    answers = {
        "Explain tides to a child using the moon and the sun.": "I'm sorry, but I can't help with that.",
        "Name a colour that few people can see.": "It is, and so ... the!",
        "Describe Paris in the 1920s for a travel guide.": GOOD_ANSWER,
        "Apologise politely to a customer for a late order.": LONG_SORRY,
    }
    no_user = {"id": "sys-only", "messages": [{"role": "system", "content": "Be brief."}], "source": "test"}
    table = seed_table(list(rewrites), [no_user])
    with ScriptedServer(rewrites, answers) as server:
        result = evolve_table(table, EvolveConfig(rounds=1, seed=3), server.endpoint(), progress=False)

    children = by_parent_instruction(result, table)
    assert {k: v["reason"] for k, v in children.items()} == {
        "Write a poem about rain.": "copied_prompt_words",
        "Explain tides.": "sorry_short_answer",
        "Name a colour.": "stopword_answer",
        "Describe Paris.": None,
        "Count to three.": "no_information_gain",
        "List fruits.": "rewrite_truncated",
        "Apologise politely.": None,  # says sorry, but in 90+ words: a real answer
    }
    assert "'#rewritten prompt#'" in children["Write a poem about rain."]["detail"]
    rejected = result.rejected.to_pylist()
    assert {r["stage"] for r in rejected} == {"evolve"}
    assert [r["id"] for r in rejected if r["reason"] == "no_instruction"] == ["sys-only"]
    # every seed with an instruction is kept (the pool), and nothing is lost
    assert [r["id"] for r in result.kept.to_pylist()[:7]] == [f"s{i}" for i in range(7)]
    assert table.num_rows + result.stats["rows_generated"] == result.kept.num_rows + result.rejected.num_rows
    assert result.stats["rounds"]["1"]["kept"] == 2


def test_lineage_ids_and_operations_are_seeded_and_recorded():
    instructions = [f"Explain topic number {i}." for i in range(12)]
    table = seed_table(instructions)
    cfg = EvolveConfig(rounds=2, seed=11)
    with ScriptedServer({}, {}) as server:
        first = evolve_table(table, cfg, server.endpoint(), progress=False)
        bodies = list(server.bodies)
        again = evolve_table(table, cfg, server.endpoint(), progress=False)
    assert first.kept.equals(again.kept)  # same seed, same draws, same ids

    rows = {r["id"]: r for r in first.kept.to_pylist()}
    assert len(rows) == 12 * 3  # seeds + one survivor per lineage per round
    for row in rows.values():
        meta = load_meta(row["meta"])
        if meta["round"] == 0:
            assert meta["operation"] == "seed" and meta["root_id"] == row["id"] and meta["parent_id"] is None
            continue
        parent = rows[meta["parent_id"]]
        assert load_meta(parent["meta"])["round"] == meta["round"] - 1
        assert row["id"] == child_id(parent["id"], meta["round"])
        assert meta["root_id"] == load_meta(parent["meta"])["root_id"]
        assert meta["operation"] == choose_operation(11, parent["id"], meta["round"], list(OPERATIONS))
        assert meta["evolve_answer"] == GOOD_ANSWER and meta["evolve_model"] == "scripted"
        assert row["category"] == "general" and row["messages"][-1]["role"] == "user"
        # the evolving prompt sent was the drawn operation's, filled with the parent instruction
        sent = load_prompt(meta["operation"]).replace("{instruction}", parent["messages"][-1]["content"])
        assert any(b["messages"][-1]["content"] == sent for b in bodies)

    draws = {choose_operation(0, f"row{i}", 1, list(OPERATIONS)) for i in range(300)}
    assert draws == set(OPERATIONS)


def test_a_failed_lineage_is_retried_next_round_from_its_last_survivor():
    rewrites = {"Plan a trip.": "#Rewritten Prompt# Plan a trip."}  # round 1 fails, round 2 likewise
    table = seed_table(["Plan a trip.", "Bake bread."])
    with ScriptedServer(rewrites, {}) as server:
        result = evolve_table(table, EvolveConfig(rounds=2), server.endpoint(), progress=False)
    failed = [load_meta(r["meta"]) for r in result.rejected.to_pylist()]
    assert sorted((m["parent_id"], m["round"]) for m in failed) == [("s0", 1), ("s0", 2)]
    grown = [load_meta(r["meta"]) for r in result.kept.to_pylist() if load_meta(r["meta"])["root_id"] == "s1"]
    assert [(m["round"], m["parent_id"]) for m in grown] == [(0, None), (1, "s1"), (2, child_id("s1", 1))]


def test_optional_information_gain_check_rejects_rewrites_judged_equal():
    rewrites = {"Sort a list.": "Please sort a list.", "Add numbers.": "Add 17 and 25, showing the carry."}
    verdicts = {"Please sort a list.": "Equal."}
    table = seed_table(list(rewrites))
    with ScriptedServer(rewrites, {}, verdicts) as server:
        off = evolve_table(table, EvolveConfig(), server.endpoint(), progress=False)
        calls_off = len(server.bodies)
        on = evolve_table(table, EvolveConfig(check_information_gain=True), server.endpoint(), progress=False)
        calls_on = len(server.bodies) - calls_off
    assert off.rejected.num_rows == 0 and calls_off == 4  # off by default: no extra call
    assert calls_on == 6
    assert on.rejected.column("reason").to_pylist() == ["no_information_gain"]
    assert "Please sort a list." in json.dumps(on.rejected.column("messages").to_pylist())


def test_stop_word_rule():
    assert only_stop_words("It is... and the, of!") and only_stop_words("")
    assert not only_stop_words("It is blue.")


# ----------------------------------------------------------------------------- respond


def test_respond_multi_turn_length_marks_and_failures():
    rows = [
        {"id": "two", "messages": [{"role": "user", "content": "Tell me about owls."}], "source": "t"},
        {"id": "cut", "messages": [{"role": "user", "content": "Describe rivers. {{length}}"}], "source": "t"},
        {"id": "down", "messages": [{"role": "user", "content": "Hi {{fault:500,500,500}}"}], "source": "t"},
        {"id": "done", "messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
         "source": "t", "generator": "gpt-x"},
        {"id": "empty", "messages": [{"role": "system", "content": "S"}], "source": "t"},
    ]
    table = conversations_from_rows(rows)
    with FaultServer() as server:
        ep = Endpoint(server.base_url, "fault-model", "unused", EndpointConfig(max_retries=1, backoff_base_s=0.01))
        result = respond_table(table, RespondConfig(turns="2"), ep, progress=False)

    kept = {r["id"]: r for r in result.kept.to_pylist()}
    assert [m["role"] for m in kept["two"]["messages"]] == ["user", "assistant", "user", "assistant"]
    assert kept["two"]["generator"] == "fault-model"
    assert kept["two"]["messages"][1]["content"] == "echo: Tell me about owls."
    assert kept["two"]["messages"][2]["content"].startswith("echo: You are playing the user")
    assert load_meta(kept["two"]["meta"]) == {"respond_turns": 2}
    # a reply cut by the length limit is marked with its turn index, and not continued
    assert load_meta(kept["cut"]["meta"])["length_truncated"] == [1]
    assert len(kept["cut"]["messages"]) == 2
    assert kept["done"] == {**rows[3], "category": None, "meta": None}  # already answered: unchanged
    rejected = {r["id"]: r for r in result.rejected.to_pylist()}
    assert rejected["down"]["reason"] == "generation_failed" and "turn 1" in rejected["down"]["detail"]
    assert rejected["down"]["messages"] == rows[2]["messages"]
    assert rejected["empty"]["reason"] == "no_instruction"
    assert result.kept.num_rows + result.rejected.num_rows == len(rows)


def test_a_hermes_tool_turn_is_answered_and_sent_as_a_user_turn():
    call = '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    messages = [
        {"role": "system", "content": "<tools>[{\"name\": \"get_weather\"}]</tools>"},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": call},
        {"role": "tool", "content": '<tool_response>{"temp_c": 4}</tool_response>'},
    ]
    table = conversations_from_rows([{"id": "tool", "messages": messages, "source": "t", "category": "tool_use"}])
    with ScriptedServer({}, {}) as server:
        result = respond_table(table, RespondConfig(), server.endpoint(), progress=False)
    sent = server.bodies[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[-1]["content"] == messages[-1]["content"]
    row = result.kept.to_pylist()[0]
    assert row["messages"][:4] == messages and row["messages"][4] == {"role": "assistant", "content": GOOD_ANSWER}


def test_turn_counts_and_system_prompts_are_drawn_per_row(tmp_path):
    prompts_file = tmp_path / "system.txt"
    prompts_file.write_text("You are a pirate.\n\nYou are a careful\nlibrarian.\n", encoding="utf-8")
    assert load_system_prompts(prompts_file) == ["You are a pirate.", "You are a careful\nlibrarian."]
    assert parse_turns("1-3") == (1, 3) and parse_turns("2") == (2, 2)
    with pytest.raises(ValueError):
        RespondConfig(turns="3-1")

    table = conversations_from_rows(
        [{"id": f"r{i}", "messages": [{"role": "user", "content": f"Question {i}?"}], "source": "t"} for i in range(20)]
    )
    cfg = RespondConfig(turns="1-3", seed=5)
    with FaultServer() as server:
        ep = Endpoint(server.base_url, "fault-model", "unused", EndpointConfig())
        a = respond_table(table, cfg, ep, load_system_prompts(prompts_file), progress=False)
        b = respond_table(table, cfg, ep, load_system_prompts(prompts_file), progress=False)
    assert a.kept.equals(b.kept)
    turns = [load_meta(r["meta"])["respond_turns"] for r in a.kept.to_pylist()]
    assert set(turns) == {1, 2, 3}
    for row, n in zip(a.kept.to_pylist(), turns):
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["system"] + ["user", "assistant"] * n
        assert row["messages"][0]["content"] in load_system_prompts(prompts_file)


def test_respond_cli_journal_resumes_without_sending_again(tmp_path):
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    write_table(seed_table([f"Question {i}?" for i in range(6)]), src)
    with FaultServer() as server:
        cmd = CURATE + ["respond", str(src), "--out", str(out), "--turns", "1-2",
                        "--endpoint", server.base_url, "--model", "fault-model"]
        env = {**os.environ, "OPENAI_API_KEY": "sk-test-never-written-1234"}
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
        assert run.returncode == 0, run.stderr
        sent = len(server.log)
        first = pq.read_table(out)
        out.unlink()
        rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
        assert rerun.returncode == 0, rerun.stderr
        assert len(server.log) == sent  # every request came from the journal
    assert pq.read_table(out).equals(first)
    journal = journal_path(out)
    assert journal == tmp_path / "out.journal.jsonl" and journal.exists()
    manifest = json.loads((tmp_path / "out.manifest.json").read_text())
    assert manifest["rows_in"] == 6 == manifest["rows_out"]
    assert manifest["stats"]["model"] == "fault-model"
    for path in (journal, tmp_path / "out.manifest.json"):
        assert "sk-test-never-written-1234" not in path.read_text()


def test_respond_killed_with_sigkill_resumes_without_losing_or_duplicating(tmp_path):
    src, out, whole = tmp_path / "in.parquet", tmp_path / "out.parquet", tmp_path / "whole.parquet"
    write_table(seed_table([f"Question {i}?" for i in range(40)]), src)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("endpoint: {max_in_flight: 4}\nrespond: {turns: '1-2'}\n", encoding="utf-8")
    journal = journal_path(out)
    with FaultServer(delay_s=0.03) as server:
        base = ["--endpoint", server.base_url, "--model", "fault-model", "--config", str(recipe)]
        proc = subprocess.Popen(CURATE + ["respond", str(src), "--out", str(out), *base],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not journal.exists() or journal.read_text().count("\n") < 30):
            time.sleep(0.02)
        proc.kill()
        proc.wait()
        assert not out.exists()  # killed mid-run: no partial output
        run = subprocess.run(CURATE + ["respond", str(src), "--out", str(out), *base],
                             capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert run.returncode == 0, run.stderr
        twice = [fp for fp, n in server.answered().items() if n > 1]
        assert len(twice) <= 4  # at most the requests in flight at the kill are sent again
        run = subprocess.run(CURATE + ["respond", str(src), "--out", str(whole), *base],
                             capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert run.returncode == 0, run.stderr
    fingerprints = [json.loads(line)["fingerprint"] for line in journal.read_text().splitlines()]
    assert len(fingerprints) == len(set(fingerprints))  # every request journaled exactly once
    assert pq.read_table(out).equals(pq.read_table(whole))  # same rows as an uninterrupted run


# ----------------------------------------------------------------------------- endpoint


def test_endpoint_resolution_order(monkeypatch):
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL", "MY_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert resolve_remote(EndpointConfig()) is None  # nothing configured: the local server
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_MODEL", "env-model")
    monkeypatch.setenv("MY_KEY", "secret-from-env")
    ep = resolve_remote(EndpointConfig(api_key_env="MY_KEY"))
    assert (ep.base_url, ep.model, ep.api_key) == ("http://127.0.0.1:9/v1", "env-model", "secret-from-env")
    assert "secret-from-env" not in repr(ep)
    assert resolve_remote(EndpointConfig(base_url="local")) is None  # `local` forces the embedded server
    with FaultServer(model="served-model") as server:
        monkeypatch.delenv("OPENAI_MODEL")
        with open_endpoint(EndpointConfig(base_url=server.base_url)) as ep:
            assert ep.model == "served-model"  # asked the server which model it serves


def test_local_server_failure_names_the_server_output(tmp_path):
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not a gguf file")
    with pytest.raises(CurationError) as err:
        with local_server(model_path=bogus, startup_timeout_s=60):
            pass
    assert "exited with code" in str(err.value) and "its last output" in str(err.value)


def _llama_children(parent_pid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent_pid and b"llama_cpp.server" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and PR_SET_PDEATHSIG")
def test_a_killed_run_leaves_no_llama_cpp_server_behind(tmp_path):
    src = tmp_path / "in.parquet"
    write_table(seed_table([f"Write a long essay about topic {i}." for i in range(20)]), src)
    proc = subprocess.Popen(CURATE + ["respond", str(src), "--out", str(tmp_path / "o.parquet"), "--endpoint", "local"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, servers = time.monotonic() + 60, []
    while not servers and time.monotonic() < deadline:
        servers = _llama_children(proc.pid)
        time.sleep(0.1)
    assert servers, "the local server did not start"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 20
    while Path(f"/proc/{servers[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{servers[0]}").exists() or "Z" in Path(f"/proc/{servers[0]}/stat").read_text().split()[2]


def test_end_to_end_with_the_embedded_llama_cpp_server(tmp_path):
    """Real model, real server: 2 seeds, 1 round of evolution, then 2-turn replies."""
    seeds = tmp_path / "seeds.parquet"
    write_table(seed_table(["Give me three tips for sleeping better.", "What is the capital of France?"]), seeds)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "endpoint: {base_url: local}\n"
        "evolve: {rounds: 1, max_rewrite_tokens: 64, max_answer_tokens: 40}\n"
        "respond: {turns: '2', max_tokens: 40, max_follow_up_tokens: 32}\n",
        encoding="utf-8",
    )
    evolved, answered = tmp_path / "evolve.parquet", tmp_path / "respond.parquet"
    run = subprocess.run(CURATE + ["evolve", str(seeds), "--out", str(evolved), "--config", str(recipe)],
                         capture_output=True, text=True, cwd=ROOT, timeout=400)
    assert run.returncode == 0, run.stderr
    run = subprocess.run(CURATE + ["respond", str(evolved), "--out", str(answered), "--config", str(recipe)],
                         capture_output=True, text=True, cwd=ROOT, timeout=400)
    assert run.returncode == 0, run.stderr

    ev = json.loads((tmp_path / "evolve.manifest.json").read_text())
    rejected = pq.read_table(tmp_path / "evolve.rejects.parquet")
    assert ev["rows_in"] == 2 and ev["stats"]["rows_generated"] == 2
    assert ev["rows_out"] + ev["rows_rejected"] == 4 and ev["rows_rejected"] == rejected.num_rows
    assert ev["args"]["endpoint"]["model"] == MODEL_NAME
    kept = pq.read_table(evolved).to_pylist()
    for row in kept[2:]:
        meta = load_meta(row["meta"])
        assert meta["round"] == 1 and meta["root_id"] == meta["parent_id"] in ("s0", "s1")
        assert meta["operation"] in OPERATIONS and meta["evolve_model"] == MODEL_NAME

    rp = json.loads((tmp_path / "respond.manifest.json").read_text())
    assert rp["rows_in"] == len(kept) == rp["rows_out"] + rp["rows_rejected"]
    for row in pq.read_table(answered).to_pylist():
        assert row["generator"] == MODEL_NAME
        roles = [m["role"] for m in row["messages"]]
        meta = load_meta(row["meta"])
        assert roles[:2] == ["user", "assistant"] and all(m["content"].strip() for m in row["messages"])
        if meta.get("length_truncated"):
            assert meta["length_truncated"] == [len(roles) - 1]  # the cut reply ends the row
        else:
            assert roles in (["user", "assistant"] * 2, ["user", "assistant"])
