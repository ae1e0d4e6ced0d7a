"""Ingest: every shared file reads, with the expected counts, and nothing is lost."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from curation.errors import CurationError
from curation.ingest import ingest_paths
from curation.io import read_conversations, read_rejects
from curation.schema import Conversation

# file -> (records read, conversations kept, records rejected); measured once, then fixed.
EXPECTED = {
    "alpaca_eval/alpaca-7b.json": (805, 805, 0),
    "alpaca_eval/claude-2.json": (805, 805, 0),
    "alpaca_eval/falcon-7b-instruct.json": (805, 805, 0),
    "alpaca_eval/gpt-3.5-turbo-0301.json": (805, 805, 0),
    "alpaca_eval/gpt4_1106_preview.json": (805, 805, 0),
    "alpaca_eval/gpt4_gamed.json": (805, 805, 0),
    "alpaca_eval/guanaco-7b.json": (805, 805, 0),
    "alpaca_eval/llama-2-70b-chat-hf.json": (804, 804, 0),
    "alpaca_eval/llama-2-7b-chat-hf.json": (805, 805, 0),
    "alpaca_eval/oasst-sft-pythia-12b.json": (805, 805, 0),
    "alpaca_eval/text_davinci_003.json": (805, 805, 0),
    "alpaca_eval/vicuna-13b.json": (805, 805, 0),
    "arena_hard/v0.1_answer_gpt-3.5-turbo-0125.jsonl": (500, 0, 500),
    "arena_hard/v0.1_answer_gpt-4-0314.jsonl": (500, 0, 500),
    "arena_hard/v0.1_answer_gpt-4-0613.jsonl": (500, 0, 500),
    "arena_hard/v0.1_question.jsonl": (500, 500, 0),
    "axolotl_fixtures/alpaca.json": (2, 2, 0),
    "axolotl_fixtures/conversation.json": (1, 1, 0),
    "axolotl_fixtures/conversation.missingturns.json": (1, 1, 0),
    "bfcl/BFCL_v4_irrelevance.json": (240, 240, 0),
    "bfcl/BFCL_v4_multi_turn_base.json": (200, 200, 0),
    "bfcl/BFCL_v4_multiple.json": (200, 200, 0),
    "bfcl/BFCL_v4_parallel.json": (200, 200, 0),
    "bfcl/BFCL_v4_simple_python.json": (400, 400, 0),
    "codealpaca/code_alpaca_2k.json": (2017, 2017, 0),
    "gpteacher/roleplay-simple-deduped-roleplay-instruct.json": (1923, 1923, 0),
    "gpteacher/toolformer-dedupe-only-dataset.json": (7673, 7673, 0),
    "gpteacher/toolformer-similarity-0.9-dataset.json": (5959, 5959, 0),
    "gsm8k/train.jsonl": (7473, 7473, 0),
    "hh_rlhf/harmless-base_test.jsonl": (2312, 2312, 0),
    "instructionwild/user_1.jsonl": (429, 429, 0),
    "instructionwild/user_2.jsonl": (248, 246, 2),
    "instructionwild/user_3.jsonl": (201, 198, 3),
    "jailbreakbench/GCG__transfer__gpt-3.5-turbo-1106.json": (100, 100, 0),
    "jailbreakbench/GCG__transfer__gpt-4-0125-preview.json": (100, 100, 0),
    "jailbreakbench/GCG__white_box__llama-2-7b-chat-hf.json": (100, 100, 0),
    "jailbreakbench/GCG__white_box__vicuna-13b-v1.5.json": (100, 100, 0),
    "jailbreakbench/JBC__manual__gpt-3.5-turbo-1106.json": (100, 100, 0),
    "jailbreakbench/JBC__manual__gpt-4-0125-preview.json": (100, 100, 0),
    "jailbreakbench/JBC__manual__llama-2-7b-chat-hf.json": (100, 100, 0),
    "jailbreakbench/JBC__manual__vicuna-13b-v1.5.json": (100, 100, 0),
    "jailbreakbench/PAIR__black_box__gpt-3.5-turbo-1106.json": (100, 87, 13),
    "jailbreakbench/PAIR__black_box__gpt-4-0125-preview.json": (100, 64, 36),
    "jailbreakbench/PAIR__black_box__llama-2-7b-chat-hf.json": (100, 4, 96),
    "jailbreakbench/PAIR__black_box__vicuna-13b-v1.5.json": (100, 82, 18),
    "jailbreakbench/prompt_with_random_search__black_box__gpt-3.5-turbo-1106.json": (100, 100, 0),
    "jailbreakbench/prompt_with_random_search__black_box__gpt-4-0125-preview.json": (100, 100, 0),
    "jailbreakbench/prompt_with_random_search__black_box__llama-2-7b-chat-hf.json": (100, 100, 0),
    "jailbreakbench/prompt_with_random_search__black_box__vicuna-13b-v1.5.json": (100, 100, 0),
    "llamafactory/alpaca_en_demo.json": (999, 999, 0),
    "llamafactory/dataset_info.json": (104, 0, 104),
    "llamafactory/glaive_toolcall_en_demo.json": (300, 300, 0),
    "llamafactory/identity.json": (91, 91, 0),
    "llamafactory/reason_tool_use_demo_50.jsonl": (50, 50, 0),
    "oasst/en_100_tree.jsonl": (100, 626, 0),
    "refusal_direction/completions/gemma-2b-it__harmless_actadd_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/gemma-2b-it__harmless_baseline_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/gemma-2b-it__jailbreakbench_ablation_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/gemma-2b-it__jailbreakbench_actadd_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/gemma-2b-it__jailbreakbench_baseline_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/llama-2-7b-chat-hf__harmless_actadd_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/llama-2-7b-chat-hf__harmless_baseline_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/llama-2-7b-chat-hf__jailbreakbench_ablation_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/llama-2-7b-chat-hf__jailbreakbench_actadd_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/llama-2-7b-chat-hf__jailbreakbench_baseline_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/meta-llama-3-8b-instruct__harmless_actadd_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/meta-llama-3-8b-instruct__harmless_baseline_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/meta-llama-3-8b-instruct__jailbreakbench_ablation_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/meta-llama-3-8b-instruct__jailbreakbench_actadd_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/meta-llama-3-8b-instruct__jailbreakbench_baseline_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/qwen-1_8b-chat__harmless_actadd_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/qwen-1_8b-chat__harmless_baseline_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/qwen-1_8b-chat__jailbreakbench_ablation_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/qwen-1_8b-chat__jailbreakbench_actadd_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/qwen-1_8b-chat__jailbreakbench_baseline_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/yi-6b-chat__harmless_actadd_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/yi-6b-chat__harmless_baseline_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/yi-6b-chat__jailbreakbench_ablation_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/yi-6b-chat__jailbreakbench_actadd_evaluations.json": (100, 100, 0),
    "refusal_direction/completions/yi-6b-chat__jailbreakbench_baseline_evaluations.json": (100, 100, 0),
    "seeds/alpaca_seed_tasks.jsonl": (175, 175, 0),
    "seeds/self_instruct_user_oriented.jsonl": (252, 252, 0),
    "toolbench/answer/G1_answer/10_ChatGPT_DFS_woFilter_w2.json": (1, 1, 0),
    "toolbench/answer/G1_answer/11_ChatGPT_DFS_woFilter_w2.json": (1, 1, 0),
    "toolbench/answer/G1_answer/57_ChatGPT_DFS_woFilter_w2.json": (1, 1, 0),
    "toolbench/answer/G1_answer/59_ChatGPT_DFS_woFilter_w2.json": (1, 1, 0),
    "toolbench/answer/G1_answer/69_ChatGPT_DFS_woFilter_w2.json": (1, 0, 1),
    "toolbench/answer/G2_answer/102_ChatGPT_DFS_woFilter_w2.json": (1, 1, 0),
    "toolbench/answer/G2_answer/10_ChatGPT_DFS_woFilter_w2.json": (1, 1, 0),
    "toolbench/answer/G2_answer/119_ChatGPT_DFS_woFilter_w2.json": (1, 1, 0),
    "toolbench/answer/G2_answer/127_ChatGPT_DFS_woFilter_w2.json": (1, 1, 0),
    "toolbench/answer/G2_answer/52_ChatGPT_DFS_woFilter_w2.json": (1, 1, 0),
    "toolbench/answer/G3_answer/13_ChatGPT_DFS_woFilter_w2.json": (1, 1, 0),
    "toolbench/answer/G3_answer/15_ChatGPT_DFS_woFilter_w2.json": (1, 1, 0),
    "toolbench/answer/G3_answer/21_ChatGPT_DFS_woFilter_w2.json": (1, 1, 0),
    "toolbench/answer/G3_answer/3_ChatGPT_DFS_woFilter_w2.json": (1, 1, 0),
    "toolbench/answer/G3_answer/8_ChatGPT_DFS_woFilter_w2.json": (1, 0, 1),
    "toolbench/instruction/G1_query.json": (5, 5, 0),
    "toolbench/instruction/G2_query.json": (3, 3, 0),
    "toolbench/instruction/G3_query.json": (2, 2, 0),
    "toolbench/instruction/inference_query_demo.json": (1, 1, 0),
    "toolbench/instruction/inference_query_demo_open_domain.json": (1, 1, 0),
}


@pytest.fixture(scope="module")
def everything(shared_data):
    return ingest_paths([shared_data])


def test_every_shared_file_ingests_with_expected_counts(everything, shared_data):
    files = everything.stats["files"]
    got = {str(Path(f).relative_to(shared_data)): (s["records"], s["conversations"], sum(s["rejected"].values()))
           for f, s in files.items()}
    assert got == EXPECTED


def test_nothing_lost(everything):
    stats = everything.stats
    trees_extra = 626 - 100  # OASST: 100 trees become 626 root-to-leaf conversations
    assert stats["records"] + trees_extra == everything.kept.num_rows + everything.rejected.num_rows


def test_rows_validate_against_the_pydantic_model(everything):
    for row in everything.kept.slice(0, 2000).to_pylist():
        Conversation.model_validate(row)
    ids = everything.kept.column("id").to_pylist()
    assert len(ids) == len(set(ids))


def test_invalid_instructionwild_lines_are_rejected_with_file_and_line(everything):
    rej = pl.from_arrow(everything.rejected).filter(pl.col("reason") == "invalid_json")
    assert rej.height == 5
    assert all(d.split(":")[0].endswith(".jsonl") and d.split(":")[1].isdigit() for d in rej["detail"])
    assert set(rej["source"].str.split("/").list.first()) == {"instructionwild"}


def test_arena_hard_dict_answers_are_rejected(everything):
    rej = pl.from_arrow(everything.rejected).filter(pl.col("source").str.starts_with("arena_hard/v0.1_answer"))
    assert rej.height == 1500 and set(rej["reason"]) == {"content_not_text"}


def test_tool_use_is_normalised_to_hermes(everything):
    rows = pl.from_arrow(everything.kept).filter(pl.col("source") == "llamafactory/glaive_toolcall_en_demo.json")
    first = rows.row(0, named=True)["messages"]
    assert first[0]["role"] == "system" and "<tools>" in first[0]["content"]
    calls = [m for r in rows["messages"] for m in r if "<tool_call>" in m["content"]]
    assert calls and all(m["role"] == "assistant" for m in calls)
    for m in calls:
        body = m["content"].split("<tool_call>")[1].split("</tool_call>")[0]
        call = json.loads(body)
        assert m["role"] == "assistant" and set(call) == {"name", "arguments"}
    results = [m for r in rows["messages"] for m in r if m["role"] == "tool"]
    assert results and all(m["content"].startswith("<tool_response>") for m in results)


def test_oasst_paths_share_prefixes(everything):
    rows = pl.from_arrow(everything.kept).filter(pl.col("source") == "oasst/en_100_tree.jsonl")
    assert rows.height == 626
    tree_ids = rows["meta"].map_elements(lambda m: json.loads(m)["tree_id"], return_dtype=pl.String)
    assert tree_ids.n_unique() == 100


def test_generator_and_ids_carried_over(everything):
    rows = pl.from_arrow(everything.kept).filter(pl.col("source") == "alpaca_eval/claude-2.json")
    assert set(rows["generator"]) == {"claude-2"}
    again = ingest_paths([Path(everything.stats["files"].__iter__().__next__())])
    assert again.kept.column("id").to_pylist()[:5] == everything.kept.column("id").to_pylist()[:5]


def test_strict_stops_with_file_and_line(shared_data):
    with pytest.raises(CurationError, match=r"user_\d\.jsonl:\d+: invalid_json"):
        ingest_paths([shared_data / "instructionwild"], strict=True)


def test_cli_writes_outputs_and_manifest(tmp_path, shared_data):
    out, rej = tmp_path / "x.parquet", tmp_path / "x.rejects.parquet"
    proc = subprocess.run(
        [sys.executable, "-m", "curation", "ingest", str(shared_data / "instructionwild"), str(shared_data / "gsm8k"),
         "--out", str(out), "--rejects", str(rej)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    kept, rejected = read_conversations(out), read_rejects(rej)
    manifest = json.loads((tmp_path / "x.manifest.json").read_text())
    assert manifest["rows_in"] == kept.num_rows + rejected.num_rows == 878 + 7473
    assert manifest["rejected_by_reason"] == {"invalid_json": 5}
    assert all(len(i["sha256"]) == 64 for i in manifest["inputs"])
    assert "Traceback" not in proc.stderr


def test_cli_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"a": [1, 2}\n')
    proc = subprocess.run([sys.executable, "-m", "curation", "ingest", str(bad), "--out", str(tmp_path / "o.parquet")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and "broken.json:1" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_saved_hf_dataset_and_parquet_inputs(tmp_path):
    from datasets import Dataset

    rows = [{"instruction": "Add 2 and 3.", "input": "", "output": "5"}, {"instruction": "Say hi.", "input": "", "output": "hi"}]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    pl.DataFrame(rows).write_parquet(tmp_path / "rows.parquet")
    res = ingest_paths([tmp_path / "hf", tmp_path / "rows.parquet"])
    assert res.kept.num_rows == 4 and res.rejected.num_rows == 0
    assert res.kept.column("messages").to_pylist()[0][1] == {"role": "assistant", "content": "5"}
