"""The filter stage: each reason on small hand-made conversations, the shared data's known
defects, the refusal detector on real refusals, and the `curate filter` round trip."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curation.filter import FilterConfig, filter_table
from curation.ingest import ingest_paths
from curation.io import conversations_from_rows, write_table
from curation.refusal import is_refusal, refusal_score

ROOT = Path(__file__).resolve().parents[1]
TOOLS_SYSTEM = (
    "You may call functions inside <tool_call></tool_call>.\n<tools>\n"
    + json.dumps({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}})
    + "\n</tools>"
)


def call(name: str = "get_weather", **arguments) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments or {"city": "Oslo"}}) + "\n</tool_call>"


def conv(*turns: tuple[str, str], id: str = "c", category: str | None = None, meta: dict | None = None) -> dict:
    return {
        "id": id,
        "messages": [{"role": r, "content": c} for r, c in turns],
        "source": "test",
        "category": category,
        "meta": json.dumps(meta) if meta else None,
    }


def run(*rows: dict, **config):
    table = conversations_from_rows([dict(r, id=r["id"] if r["id"] != "c" else f"c{i}") for i, r in enumerate(rows)])
    result = filter_table(table, FilterConfig(**config))
    assert result.kept.num_rows + result.rejected.num_rows == table.num_rows
    return result


def verdict(row: dict, **config) -> tuple[str | None, str | None]:
    """(reason, detail) for one conversation; (None, None) when kept."""
    result = run(row, **config)
    if result.rejected.num_rows == 0:
        return None, None
    rej = result.rejected.to_pylist()[0]
    assert rej["stage"] == "filter"
    return rej["reason"], rej["detail"]


GOOD = conv(("system", "Be brief."), ("user", "Capital of France?"), ("assistant", "Paris."))


def test_a_clean_conversation_is_kept_unchanged():
    result = run(GOOD, GOOD)
    assert result.rejected.num_rows == 0
    assert result.kept.column("messages").to_pylist()[0] == GOOD["messages"]


@pytest.mark.parametrize(
    "row, detail_part",
    [
        (conv(("user", "Hi"), ("assistant", "")), "turn 1 (assistant): empty content"),
        (conv(("user", "Hi"), ("assistant", " \n\t ")), "turn 1 (assistant): empty content"),
        (conv(("system", ""), ("user", "Hi"), ("assistant", "Hello")), "turn 0 (system): empty content"),
        (conv(("user", "Write a poem.")), "no assistant turn"),
        (conv(("user", "Hi"), ("assistant", "Hello"), ("user", "And then?")), "turn 2 (user): conversation ends without"),
        (conv(("system", TOOLS_SYSTEM), ("user", "Weather?"), ("assistant", call()), ("tool", "<tool_response>\n{}\n</tool_response>")),
         "turn 3 (tool): conversation ends without"),
    ],
)
def test_empty(row, detail_part):
    reason, detail = verdict(row)
    assert reason == "empty"
    assert detail_part in detail


def test_no_turns_at_all_is_empty():
    assert verdict(conv()) == ("empty", "no turns at all")


TOOL_OK = "<tool_response>\n{\"temp\": 3}\n</tool_response>"


@pytest.mark.parametrize(
    "turns, detail_part",
    [
        ((("user", "Hi"), ("system", "Be nice."), ("assistant", "Hello")), "turn 1 (system): a system turn only comes first"),
        ((("user", "Hi"), ("user", "Hello?"), ("assistant", "Hello")), "turn 1 (user): follows a user turn"),
        ((("assistant", "Hello"), ("user", "Hi"), ("assistant", "Yes")), "turn 0 (assistant): follows nothing"),
        ((("user", "Hi"), ("assistant", "Hello"), ("assistant", "Again")), "turn 2 (assistant): follows another assistant turn"),
        ((("user", "Weather?"), ("assistant", "Let me look."), ("tool", TOOL_OK), ("assistant", "3 degrees")),
         "turn 2 (tool): a tool result after an assistant turn without a <tool_call>"),
        ((("user", "Weather?"), ("assistant", call()), ("tool", TOOL_OK), ("tool", TOOL_OK), ("assistant", "3")),
         "turn 3 (tool): a tool result after more tool turns than calls"),
        ((("user", "Weather?"), ("assistant", call()), ("tool", TOOL_OK), ("user", "Well?"), ("assistant", "3")),
         "turn 3 (user): follows a tool turn"),
    ],
)
def test_role_order_is_malformed(turns, detail_part):
    reason, detail = verdict(conv(*turns))
    assert reason == "malformed"
    assert detail_part in detail


def test_several_tool_results_after_several_calls_are_fine():
    row = conv(
        ("system", TOOLS_SYSTEM), ("user", "Weather in Oslo and Rome?"),
        ("assistant", call(city="Oslo") + "\n" + call(city="Rome")), ("tool", TOOL_OK), ("tool", TOOL_OK),
        ("assistant", "Oslo 3, Rome 15."),
    )
    assert verdict(row) == (None, None)


@pytest.mark.parametrize(
    "assistant, detail_part",
    [
        ("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}", "unclosed <tool_call>"),
        ("<REASONING>think</PLAN> answer", "</PLAN> closes <REASONING>"),
        ("answer </SCRATCHPAD>", "</SCRATCHPAD> without an opening tag"),
        ("<tool_call>\nget_weather(city='Oslo')\n</tool_call>", "<tool_call> body is not JSON"),
        ("<tool_call>\n{\"arguments\": {}}\n</tool_call>", "<tool_call> without a name"),
        ("<tool_call>\n{\"name\": \"get_weather\"}\n</tool_call>", "without an arguments object"),
        (call("delete_everything"), "<tool_call> names 'delete_everything', not declared in <tools>"),
    ],
)
def test_tags_and_tool_calls(assistant, detail_part):
    row = conv(("system", TOOLS_SYSTEM), ("user", "Weather?"), ("assistant", assistant))
    reason, detail = verdict(row)
    assert reason == "malformed"
    assert detail.startswith("turn 2 (assistant): ")
    assert detail_part in detail


def test_balanced_reasoning_tags_and_declared_calls_are_kept():
    row = conv(
        ("system", TOOLS_SYSTEM), ("user", "Weather?"),
        ("assistant", "<REASONING>\nNeed the weather tool.\n</REASONING>\n" + call()), ("tool", TOOL_OK),
        ("assistant", "<SCRATCHPAD>3 degrees</SCRATCHPAD>It is 3 degrees in Oslo."),
    )
    assert verdict(row) == (None, None)


def test_calls_without_a_tools_block_are_not_checked_against_declarations():
    row = conv(("user", "Weather?"), ("assistant", call("anything")), ("tool", TOOL_OK), ("assistant", "3"))
    assert verdict(row) == (None, None)


@pytest.mark.parametrize(
    "content, detail_part",
    [
        ("Paris.<|im_end|>\n<|im_start|>user", "control token '<|im_end|>'"),
        ("Paris<|eot_id|>", "control token '<|eot_id|>'"),
        ("<|begin_of_text|>Paris", "control token '<|begin_of_text|>'"),
        ("Hello, I am {{name}}, made by {{author}}.", "unfilled template placeholder '{{name}}'"),
        ("Caf\ufffd au lait", "broken encoding '\ufffd'"),
        ("the massâ€“energy formula", "broken encoding 'â€“'"),
        ("nul\x00byte", "broken encoding"),
        ("{'content': 'Paris', 'index': 0}", "serialized object, not text"),
        ('{"turns": [{"content": "Paris"}]}', "serialized object, not text"),
    ],
)
def test_content_defects_are_malformed(content, detail_part):
    reason, detail = verdict(conv(("user", "Capital of France?"), ("assistant", content)))
    assert reason == "malformed"
    assert detail.startswith("turn 1 (assistant): ")
    assert detail_part in detail


@pytest.mark.parametrize(
    "content",
    [
        "In Jinja write:\n```\n<td>{{ user.name }}</td>\n```",
        "<ul>\n  <li *ngFor=\"let b of books\">{{b.title}}</li>\n</ul>",
        'Use `{{ name }}` in the template.',
        '{"name": "Ann", "age": 3}',
        "Strike with <s>this</s>.",
    ],
)
def test_template_code_json_answers_and_html_are_not_malformed(content):
    assert verdict(conv(("user", "Show me."), ("assistant", content))) == (None, None)


def test_extra_control_sequences_are_configurable():
    row = conv(("user", "Hi"), ("assistant", "Hello</s>"))
    assert verdict(row) == (None, None)
    reason, detail = verdict(row, extra_control_sequences=["</s>"])
    assert reason == "malformed" and "'</s>'" in detail


def test_length_truncated_meta_marks_the_turn():
    row = conv(("user", "Long essay"), ("assistant", "It was the best of"), meta={"length_truncated": [1]})
    reason, detail = verdict(row)
    assert reason == "malformed"
    assert detail.startswith("turn 1:") and "length limit" in detail


def test_refusal_detail_names_turn_score_and_evidence():
    row = conv(("user", "Hi"), ("assistant", "Hello!"), ("user", "How do I pick a lock?"),
               ("assistant", "I'm sorry, but I can't help with that. As an AI language model, I must follow ethical guidelines."))
    reason, detail = verdict(row)
    assert reason == "refusal"
    assert detail.startswith("turn 3 (assistant): score ")
    assert "refusal:" in detail and "ai_self_reference:" in detail


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't assist with that request.",
        "I cannot fulfill your request. I'm just an AI, it's not within my programming or ethical guidelines to create content that promotes harm.",
        "As an AI language model, I don't have personal opinions or the ability to browse the internet.",
        "I apologize, but I cannot provide instructions for making weapons. It is illegal and unethical. Is there anything else I can help you with?",
        "I must respectfully decline to write that.",
        "Unfortunately I do not feel comfortable writing a humorous list about dying.",
        "I'm sorry, but tampering with monitoring devices is illegal and unethical. It is important to respect the law.",
        "I am ChatGPT, a large language model trained by OpenAI. As of my last update in 2021 I cannot access current events.",
    ],
)
def test_refusals_are_detected(text):
    score, evidence = refusal_score(text)
    assert is_refusal(text), (score, evidence)
    assert evidence


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry to hear about your loss. Here are some ways to cope: talk to friends, rest, and give yourself time.",
        "Paris is the capital of France.",
        "I can't help but be drawn to her, like a moth to a flame.",
        "I can't recommend this book enough, it changed my life.",
        "I cannot describe how happy I am to see you again!",
        "I cannot provide past weather data, but I can give you the current weather in Tokyo: weather('Tokyo today').",
        "Sure! Here is a poem about spring.\n\nBlossoms wake, the rivers sing...",
        "Lock picking is legal for locksmiths and hobbyists on locks they own. It is important to respect the law. "
        "Here is how a pin tumbler works:\n1. Insert a tension wrench.\n2. Rake the pins.\n3. Turn." + " More detail." * 80,
        "As an AI language model, I cannot condone illegal activities. However, I can provide a fictional scenario "
        "of how the detective uncovers the scheme:\n\n" + "The detective followed the money trail. " * 20,
    ],
)
def test_help_condolences_idioms_and_partial_answers_are_not_refusals(text):
    assert not is_refusal(text), refusal_score(text)


def test_roleplay_apology_is_not_a_refusal_but_ai_disclaimer_is():
    line = "I'm sorry, but I can't do that, matey. A pirate never gives up his treasure!"
    in_character = conv(("system", "Roleplay as Captain Flint, a pirate."), ("user", "Where's the gold?"), ("assistant", line))
    assert verdict(in_character) == (None, None)
    assert verdict(dict(in_character, messages=in_character["messages"][1:], category="roleplay")) == (None, None)
    assert verdict(in_character, roleplay_needs_ai_evidence=False)[0] == "refusal"
    out_of_character = conv(("system", "Roleplay as Captain Flint, a pirate."), ("user", "Where's the gold?"),
                            ("assistant", "I'm sorry, but as an AI language model I cannot engage in this role-play."))
    assert verdict(out_of_character)[0] == "refusal"


def test_threshold_and_checks_are_configurable():
    refusal = conv(("user", "Hack my neighbour's wifi"), ("assistant", "I'm sorry, but I can't help with that."))
    assert verdict(refusal)[0] == "refusal"
    assert verdict(refusal, refusal_threshold=0.99) == (None, None)
    assert verdict(refusal, checks=["empty_turn", "role_order"]) == (None, None)
    empty = conv(("user", "Hi"), ("assistant", ""))
    assert verdict(empty, checks=["refusal"]) == (None, None)


def test_first_problem_decides_and_every_row_leaves_once():
    rows = [
        conv(("user", "Hi"), ("assistant", ""), ("user", "{{name}}"), ("assistant", "I can't help with that.")),
        GOOD,
        conv(("user", "Hi"), ("assistant", "Hello<|im_end|>")),
    ]
    result = run(*rows)
    assert result.rejected.column("reason").to_pylist() == ["empty", "malformed"]
    assert result.kept.column("id").to_pylist() == ["c1"]
    assert result.stats["rejected_by_reason"] == {"empty": 1, "malformed": 1}


# ----------------------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def shared_filtered(shared_data):
    files = [
        "axolotl_fixtures/conversation.missingturns.json",
        "axolotl_fixtures/conversation.json",
        "codealpaca/code_alpaca_2k.json",
        "llamafactory/identity.json",
        "llamafactory/glaive_toolcall_en_demo.json",
        "llamafactory/reason_tool_use_demo_50.jsonl",
        "gpteacher/roleplay-simple-deduped-roleplay-instruct.json",
        "refusal_direction/completions/llama-2-7b-chat-hf__jailbreakbench_baseline_evaluations.json",
        "refusal_direction/completions/llama-2-7b-chat-hf__harmless_baseline_evaluations.json",
    ]
    table = ingest_paths([shared_data / f for f in files]).kept
    result = filter_table(table)
    rejected = result.rejected.to_pylist()
    by_source: dict[str, list[dict]] = {}
    for r in rejected:
        by_source.setdefault(r["source"], []).append(r)
    return table, result, by_source


def test_axolotl_missing_turn_is_empty(shared_filtered):
    _, _, by_source = shared_filtered
    [row] = by_source["axolotl_fixtures/conversation.missingturns.json"]
    assert row["reason"] == "empty" and "(assistant): empty content" in row["detail"]
    assert "axolotl_fixtures/conversation.json" not in by_source


def test_codealpaca_two_empty_outputs_and_template_code_kept(shared_filtered):
    _, _, by_source = shared_filtered
    rows = by_source["codealpaca/code_alpaca_2k.json"]
    assert [r["reason"] for r in rows] == ["empty", "empty"]
    assert all(r["detail"] == "turn 1 (assistant): empty content" for r in rows)


def test_identity_placeholders_are_malformed(shared_filtered):
    table, _, by_source = shared_filtered
    with_placeholder = sum(
        "{{" in m["content"]
        for row, src in zip(table.column("messages").to_pylist(), table.column("source").to_pylist())
        if src == "llamafactory/identity.json" for m in row[1:2]
    )
    rows = by_source["llamafactory/identity.json"]
    assert len(rows) == with_placeholder == 85
    assert all(r["reason"] == "malformed" and "unfilled template placeholder '{{" in r["detail"] for r in rows)


def test_tool_use_data_is_well_formed(shared_filtered):
    """Ingest's Hermes tool format passes every malformation check; glaive's 'I'm sorry, but I'm
    unable to book flights' capability disclaimers are the only drops, as refusals."""
    _, _, by_source = shared_filtered
    glaive = by_source["llamafactory/glaive_toolcall_en_demo.json"]
    assert {r["reason"] for r in glaive} == {"refusal"}
    assert all("I'm sorry" in r["detail"] for r in glaive)
    assert "llamafactory/reason_tool_use_demo_50.jsonl" not in by_source


def test_roleplay_characters_are_not_refusals(shared_filtered):
    _, _, by_source = shared_filtered
    assert "gpteacher/roleplay-simple-deduped-roleplay-instruct.json" not in by_source


def test_real_refusals_are_caught_and_harmless_answers_kept(shared_filtered):
    _, _, by_source = shared_filtered
    def rows(name):
        return [r for src, rs in by_source.items() if src.endswith(name) for r in rs]

    refused = rows("llama-2-7b-chat-hf__jailbreakbench_baseline_evaluations.json")
    assert sum(r["reason"] == "refusal" for r in refused) >= 90  # llama-2-chat refuses ~all 100 harmful prompts
    harmless = rows("llama-2-7b-chat-hf__harmless_baseline_evaluations.json")
    assert len(harmless) <= 3


def test_arena_hard_dict_answers_never_reach_the_kept_table(shared_data):
    """Ingest rejects them (content_not_text); if a dict's text form slipped through, the filter catches it."""
    result = ingest_paths([shared_data / "arena_hard/v0.1_answer_gpt-4-0314.jsonl"])
    assert result.kept.num_rows == 0 and result.rejected.num_rows == 500
    raw = json.loads((shared_data / "arena_hard/v0.1_answer_gpt-4-0314.jsonl").read_text().splitlines()[0])
    answer = raw["messages"][1]["content"]
    assert isinstance(answer, dict)
    reason, detail = verdict(conv(("user", "Q"), ("assistant", str(answer))))
    assert reason == "malformed" and "serialized object" in detail


# ----------------------------------------------------------------------------- CLI

def curate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curation", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_round_trip_counts_add_up(tmp_path):
    rows = [GOOD, conv(("user", "Hi"), ("assistant", "")), conv(("user", "Lockpicking?"), ("assistant", "I'm sorry, but I can't help with that.")),
            conv(("user", "Hi"), ("assistant", "Hi {{name}}"))]
    table = conversations_from_rows([dict(r, id=f"r{i}") for i, r in enumerate(rows)])
    src = tmp_path / "in.parquet"
    write_table(table, src)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("filter:\n  refusal_threshold: 0.5\n")
    out, rej = tmp_path / "out.parquet", tmp_path / "rej.parquet"
    proc = curate("filter", str(src), "--out", str(out), "--rejects", str(rej), "--config", str(recipe))
    assert proc.returncode == 0, proc.stderr
    kept, rejected = pq.read_table(out), pq.read_table(rej)
    assert kept.column("id").to_pylist() == ["r0"]
    assert sorted(rejected.column("reason").to_pylist()) == ["empty", "malformed", "refusal"]
    manifest = json.loads((tmp_path / "out.manifest.json").read_text())
    assert manifest["rows_in"] == 4 == manifest["rows_out"] + manifest["rows_rejected"]
    assert manifest["rejected_by_reason"] == {"empty": 1, "malformed": 1, "refusal": 1}
    assert manifest["args"]["refusal_threshold"] == 0.5
    assert "4 in = 1" in proc.stderr and "refusal" in proc.stderr


def test_cli_bad_config_is_one_line_error(tmp_path):
    src = tmp_path / "in.parquet"
    write_table(conversations_from_rows([GOOD]), src)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("filter:\n  refusal_threshold: 3\n  nonsense: 1\n")
    proc = curate("filter", str(src), "--out", str(tmp_path / "o.parquet"), "--config", str(recipe))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "filter.refusal_threshold" in proc.stderr and "filter.nonsense: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = curate("filter", str(src), "--out", str(tmp_path / "o.parquet"), "--checks", "empty_turn,spelling")
    assert proc.returncode == 2 and proc.stderr.startswith("error: --checks")
