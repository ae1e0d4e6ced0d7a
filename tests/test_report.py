"""Report and card on real shared data: Table 1 counts, the funnel, the files, the card."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from curation.card import CardConfig, render_card, shard_glob
from curation.errors import CurationError
from curation.ingest import ingest_paths
from curation.io import concat_rejects, read_conversations, write_table
from curation.manifest import Manifest, read_manifest
from curation.report import ReportConfig, build_report, load_report_config, write_report
from curation.schema import CATEGORIES

CURATE = str(Path(sys.executable).with_name("curate"))
ROWS_PER_SOURCE = 250
# shared file -> declared category (None: left untagged)
SOURCES = {
    "gsm8k/train.jsonl": "math",
    "codealpaca/code_alpaca_2k.json": "coding",
    "gpteacher/roleplay-simple-deduped-roleplay-instruct.json": "roleplay",
    "llamafactory/glaive_toolcall_en_demo.json": "tool_use",
    "llamafactory/alpaca_en_demo.json": "general",
    "alpaca_eval/claude-2.json": None,
}


def curate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CURATE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def run_dir(shared_data: Path, tmp_path_factory) -> Path:
    """runs/demo/ with an ingest output (six real sources, one untagged) and a dedup of it."""
    root = tmp_path_factory.mktemp("report")
    run = root / "runs" / "demo"
    kept, rejected = [], []
    for name, category in SOURCES.items():
        result = ingest_paths([shared_data / name], category=category)
        kept.append(result.kept.slice(0, ROWS_PER_SOURCE))
        rejected.append(result.rejected)
    table = pa.concat_tables(kept)
    rejects = concat_rejects(rejected)
    write_table(table, run / "ingest.parquet")
    write_table(rejects, run / "ingest.rejects.parquet")
    manifest = Manifest("ingest", {"src": list(SOURCES)}, [shared_data / n for n in SOURCES])
    manifest.rows_in, manifest.rows_out = table.num_rows + rejects.num_rows, table.num_rows
    manifest.count_rejects(rejects.column("reason").to_pylist())
    manifest.write(run / "ingest.parquet")
    done = curate("dedup", "runs/demo/ingest.parquet", "--out", "runs/demo/dedup.parquet", cwd=root)
    assert done.returncode == 0, done.stderr
    return run


@pytest.fixture(scope="module")
def conv_report(run_dir: Path) -> dict:
    report = build_report(run_dir / "dedup.parquet", ReportConfig())
    write_report(report, run_dir.parent.parent / "report")
    return report


def test_table1_lists_all_categories_in_order_then_untagged(conv_report):
    names = [r["category"] for r in conv_report["categories"]]
    assert names == list(CATEGORIES) + ["untagged"]
    by_cat = {r["category"]: r for r in conv_report["categories"]}
    assert by_cat["steering"]["total_tokens"] == 0 and by_cat["steering"]["conversations"] == 0
    for cat in ("math", "coding", "roleplay", "tool_use", "general", "untagged"):
        assert by_cat[cat]["conversations"] > 0 and by_cat[cat]["output_tokens"] > 0
    assert sum(r["proportion"] for r in conv_report["categories"]) == pytest.approx(1.0)


def test_conversation_counts_equal_a_per_conversation_render(run_dir, conv_report):
    """Each category's tokens equal rendering its conversations one by one with the pack template."""
    from curation.render import render
    from curation.tokenizer import load_tokenizer

    tokenizer = load_tokenizer("llama3")
    table = read_conversations(run_dir / "dedup.parquet")
    expected: dict[str, list[int]] = {}
    for messages, category in zip(table.column("messages").to_pylist(), table.column("category").to_pylist()):
        ids, labels = render(messages, tokenizer)
        counts = expected.setdefault(category or "untagged", [0, 0, 0])
        counts[0] += 1
        counts[1] += len(ids)
        counts[2] += int(np.count_nonzero(labels != -100))
    got = {r["category"]: [r["conversations"], r["total_tokens"], r["output_tokens"]] for r in conv_report["categories"] if r["conversations"]}
    assert got == expected
    t = conv_report["totals"]
    assert t["input_tokens"] + t["output_tokens"] == t["total_tokens"]
    assert t["conversations"] == table.num_rows


def test_funnel_walks_the_manifests_back_to_ingest(run_dir, conv_report):
    steps = conv_report["funnel"]
    assert [s["stage"] for s in steps] == ["ingest", "dedup"]
    ingest, dedup = (read_manifest(run_dir / f"{n}.manifest.json") for n in ("ingest", "dedup"))
    for step, m in zip(steps, (ingest, dedup)):
        assert (step["rows_in"], step["rows_out"], step["rejected_by_reason"]) == (m["rows_in"], m["rows_out"], m["rejected_by_reason"])
        assert step["rows_in"] == step["rows_out"] + step["rows_rejected"]
    assert steps[1]["rows_in"] == steps[0]["rows_out"]
    assert steps[1]["rows_rejected"] > 0  # alpaca_eval and gsm8k share no prompts, but sources repeat some


def test_funnel_found_in_the_input_folder_after_the_run_moved(run_dir, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere"
    shutil.copytree(run_dir, moved)
    monkeypatch.chdir(tmp_path)  # the manifests' relative paths no longer resolve from here
    report = build_report(moved / "dedup.parquet", ReportConfig())
    assert [s["stage"] for s in report["funnel"]] == ["ingest", "dedup"]


def test_json_csv_and_markdown_carry_the_same_figures(run_dir, conv_report):
    out = run_dir.parent.parent / "report"
    data = json.loads((out / "report.json").read_text())
    assert data["categories"] == conv_report["categories"] and data["totals"] == conv_report["totals"]
    with open(out / "report.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["category"] for r in rows] == [c["category"] for c in data["categories"]] + ["total"]
    for row, cat in zip(rows, data["categories"] + [dict(category="total", **data["totals"])]):
        for key in ("conversations", "input_tokens", "output_tokens", "total_tokens"):
            assert int(row[key]) == cat[key]
    md = (out / "report.md").read_text()
    assert "| Category | Proportion | Tokens (M) | Conversations | Input tokens | Output tokens |" in md
    for name in CATEGORIES.values():
        assert f"| {name} |" in md
    assert f"| {data['totals']['input_tokens']:,} | {data['totals']['output_tokens']:,} |" in md
    assert "Hermes 3 (Table 1)" in md  # no targets: the paper's mix is the reference


def test_chart_is_a_png_with_one_bar_per_row(run_dir):
    import matplotlib.image as mpimg

    png = run_dir.parent.parent / "report" / "category_tokens.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = mpimg.imread(png)
    assert pixels.shape[0] > 400 and pixels.shape[1] > 800


def test_targets_from_the_recipe(run_dir, tmp_path):
    recipe = tmp_path / "r.yaml"
    targets = {"general": 0.5, "math": 0.2, "coding": 0.2, "tool_use": 0.1}
    recipe.write_text(yaml.safe_dump({"report": {"targets": targets}}))
    report = build_report(run_dir / "dedup.parquet", load_report_config(recipe))
    assert report["targets"]["reference"] == "recipe"
    rows = {r["category"]: r for r in report["targets"]["rows"]}
    actual = {r["category"]: r["proportion"] for r in report["categories"]}
    assert rows["math"]["target"] == 0.2 and rows["math"]["actual"] == actual["math"]
    assert rows["steering"]["target"] == 0.0
    recipe.write_text(yaml.safe_dump({"targets": targets}))  # a top-level `targets` counts too
    assert load_report_config(recipe).targets == targets


@pytest.mark.parametrize(
    "section, message",
    [({"targets": {"maths": 1.0}}, "report.targets: Value error, unknown categories ['maths']"),
     ({"targets": {"math": 0.5}}, "sum to 0.500"),
     ({"colour": "red"}, "report.colour: unknown key")],
)
def test_bad_report_recipe_is_one_clear_line(tmp_path, section, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"report": section}))
    with pytest.raises(CurationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_report_config(recipe)


def test_cli_user_errors_exit_2_without_traceback(run_dir, tmp_path):
    for args in (["report", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "r")],
                 ["report", str(run_dir), "--out", str(tmp_path / "r")],
                 ["card", str(tmp_path), "--out", str(tmp_path / "c.md")]):
        done = curate(*args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_card_header_and_sections_from_a_report(run_dir, conv_report, tmp_path):
    out = tmp_path / "cards" / "demo.md"
    done = curate("card", str(run_dir.parent.parent / "report"), "--out", str(out), "--license", "other", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["license"] == "other" and header["language"] == ["en"]
    assert header["task_categories"] == ["text-generation"] and header["size_categories"] == ["1K<n<10K"]
    assert header["configs"][0]["data_files"][0]["split"] == "train"
    for section in ("## Composition", "## Sources", "## Generator models", "## Curation steps", "## Packing", "## Intended use", "## Limitations"):
        assert section in text
    assert "| claude-2 |" in text  # the generator recorded by ingest
    dedup = conv_report["funnel"][1]
    assert f"| dedup | `dedup.parquet` | {dedup['rows_in']:,} | {dedup['rows_out']:,} |" in text
    assert "No data in: Domain Expert, Content Generation, Steering and Alignment." in text


def test_card_template_placeholder_errors_are_clear(conv_report, tmp_path):
    bad = tmp_path / "t.md"
    bad.write_text("# $pretty_name\n$nonsense\n")
    with pytest.raises(CurationError, match="bad placeholder 'nonsense'"):
        render_card(conv_report, CardConfig(template=str(bad)), "x")


def test_shard_glob_matches_only_the_shards():
    assert shard_glob(["data-00000-of-00002.arrow", "data-00001-of-00002.arrow"]) == "data-*.arrow"
    assert shard_glob([]) == "*.arrow"


# ----------------------------------------------------------------------------- packed input

@pytest.fixture(scope="module")
def pack_dir(run_dir: Path) -> Path:
    root = run_dir.parent.parent
    done = curate("pack", "runs/demo/dedup.parquet", "--out", "runs/demo/pack", "--seq-len", "2048", "--shards", "2", cwd=root)
    assert done.returncode == 0, done.stderr
    return run_dir / "pack"


@pytest.fixture(scope="module")
def packed_report(pack_dir: Path) -> dict:
    report = build_report(pack_dir, ReportConfig())
    write_report(report, pack_dir.parent / "report-packed")
    return report


def count_shards_as_a_trainer(pack_dir: Path) -> dict[str, list[int]]:
    """Independent count: read every Arrow shard alone, cut each packed row into its sample
    spans by seq_lens, count tokens and labelled tokens per span, and join the spans'
    sample ids with samples.parquet for their category."""
    from datasets import Dataset

    index = pq.read_table(pack_dir / "samples.parquet", columns=["sample_id", "conversation_id", "category"]).to_pydict()
    category_of = {s: c or "untagged" for s, c in zip(index["sample_id"], index["category"])}
    conversation_of = dict(zip(index["sample_id"], index["conversation_id"]))
    counts: dict[str, list] = {}
    for shard in sorted(pack_dir.glob("*.arrow")):
        for row in Dataset.from_file(str(shard)):
            labels = np.asarray(row["labels"])
            assert sum(row["seq_lens"]) == row["num_tokens"] == len(row["input_ids"]) == len(labels)
            assert np.count_nonzero(labels != -100) == row["num_loss_tokens"]
            start = 0
            for n, sid in zip(row["seq_lens"], row["sample_ids"]):
                c = counts.setdefault(category_of[sid], [set(), 0, 0])
                c[0].add(conversation_of[sid])
                c[1] += n
                c[2] += int(np.count_nonzero(labels[start : start + n] != -100))
                start += n
    return {k: [len(v[0]), v[1], v[2]] for k, v in counts.items()}


def test_packed_report_tokens_equal_an_independent_count_of_the_shards(pack_dir, packed_report):
    independent = count_shards_as_a_trainer(pack_dir)
    got = {r["category"]: [r["conversations"], r["total_tokens"], r["output_tokens"]] for r in packed_report["categories"] if r["samples"]}
    assert got == independent
    stats = json.loads((pack_dir / "pack_stats.json").read_text())
    assert packed_report["totals"]["total_tokens"] == stats["total_tokens"] == sum(v[1] for v in independent.values())
    assert packed_report["totals"]["output_tokens"] == stats["loss_tokens"]


def test_packed_report_has_the_funnel_through_pack_and_the_packing(pack_dir, packed_report):
    steps = packed_report["funnel"]
    assert [s["stage"] for s in steps] == ["ingest", "dedup", "pack"]
    pack = read_manifest(pack_dir / "manifest.json")
    assert steps[2]["rows_in"] == steps[1]["rows_out"] == pack["rows_in"]
    assert steps[2]["rejected_by_reason"] == pack["rejected_by_reason"]
    assert steps[2]["rejected_by_reason"].get("too_long", 0) > 0  # 2048 tokens drop a few long ones
    p = packed_report["packing"]
    assert p["seq_len"] == 2048 and len(p["shards"]) == 2 and p["num_packs"] >= p["lower_bound_packs"]
    md = (pack_dir.parent / "report-packed" / "report.md").read_text()
    assert "## Packing" in md and f"| Packs | {p['num_packs']:,} |" in md
    assert f"| pack | `pack` | {steps[2]['rows_in']:,} | {steps[2]['rows_out']:,} |" in md


def test_card_configs_point_at_the_shards(pack_dir, packed_report, tmp_path):
    from datasets import load_dataset

    text = render_card(packed_report, CardConfig(), "demo")
    header = yaml.safe_load(text.split("---\n")[1])
    pattern = header["configs"][0]["data_files"][0]["path"]
    assert sorted(p.name for p in pack_dir.glob(pattern)) == sorted(packed_report["packing"]["shards"])
    ds = load_dataset("arrow", data_files=str(pack_dir / pattern), split="train", cache_dir=str(tmp_path))
    assert ds.num_rows == packed_report["packing"]["num_packs"]
    assert header["size_categories"] == ["n<1K"]  # rows of the published data are packs
