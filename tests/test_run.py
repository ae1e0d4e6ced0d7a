"""`curate run`: a recipe end to end, skipping what is up to date, slices, recipe errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from curation.errors import CurationError
from curation.pipeline import load_recipe, run_recipe

ROOT = Path(__file__).resolve().parents[1]


def _recipe(tmp_path: Path, shared_data: Path, **extra) -> Path:
    doc = {
        "name": "small",
        "runs_dir": str(tmp_path / "runs"),
        "stages": ["ingest", "filter", "dedup", "tag", "pack", "report", "card"],
        "sources": [
            {"path": str(shared_data / "codealpaca"), "category": "coding"},
            {"path": str(shared_data / "llamafactory" / "identity.json")},
            {"path": str(shared_data / "llamafactory" / "glaive_toolcall_en_demo.json")},
            {"path": str(shared_data / "axolotl_fixtures")},
        ],
        "dedup": {"priority": ["gpt-4"]},
        "pack": {"seq_len": 4096, "shards": 2},
        "report": {"targets": {"general": 0.6, "domain_expert": 0.1, "math": 0.05, "roleplay": 0.05,
                               "coding": 0.1, "tool_use": 0.05, "content_generation": 0.03, "steering": 0.02}},
        **extra,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_run_end_to_end_then_skip(tmp_path, shared_data):
    recipe = _recipe(tmp_path, shared_data)
    lines: list[str] = []
    run_dir = run_recipe(recipe, echo=lines.append)
    for name in ("ingest.parquet", "filter.parquet", "dedup.parquet", "tag.parquet", "pack/pack_stats.json",
                 "report/report.md", "report/category_tokens.png", "card.md"):
        assert (run_dir / name).exists(), name
    # Every stage's rows add up, and each stage reads the previous one's output.
    previous_out = None
    for stage in ("ingest", "filter", "dedup", "tag"):
        m = json.loads((run_dir / f"{stage}.manifest.json").read_text())
        assert m["rows_in"] == m["rows_out"] + m["rows_rejected"]
        if previous_out is not None:
            assert m["rows_in"] == previous_out
        previous_out = m["rows_out"]
    report = (run_dir / "report" / "report.md").read_text()
    assert "Curation funnel" in report and "Steering and Alignment" in report and "Actual vs target" in report
    # The filter found identity.json's {{name}} placeholders and axolotl's empty turn.
    filt = json.loads((run_dir / "filter.manifest.json").read_text())
    assert filt["rejected_by_reason"]["malformed"] >= 80 and filt["rejected_by_reason"]["empty"] >= 1

    lines.clear()
    run_recipe(recipe, echo=lines.append)
    assert all("up to date, skipped" in line for line in lines) and len(lines) == 7


def test_changed_setting_reruns_from_that_stage(tmp_path, shared_data):
    recipe = _recipe(tmp_path, shared_data)
    run_recipe(recipe, echo=lambda _: None)
    _recipe(tmp_path, shared_data, pack={"seq_len": 2048, "shards": 2})
    lines: list[str] = []
    run_recipe(recipe, echo=lines.append)
    ran = [line.split("]")[0].strip("[") for line in lines if "running" in line]
    assert ran == ["pack", "report", "card"]


def test_new_package_code_reruns_every_stage(tmp_path, shared_data, monkeypatch):
    """An upgrade that changes a rule or the tagger model must not leave stale outputs in place."""
    import curation.pipeline as pipeline

    recipe = _recipe(tmp_path, shared_data)
    run_recipe(recipe, echo=lambda _: None)
    monkeypatch.setattr(pipeline, "code_fingerprint", lambda: "a different release")
    lines: list[str] = []
    run_recipe(recipe, echo=lines.append)
    ran = [line.split("]")[0].strip("[") for line in lines if "running" in line]
    assert ran == ["ingest", "filter", "dedup", "tag", "pack", "report", "card"]


def test_slice_runs_only_the_named_stages(tmp_path, shared_data):
    recipe = _recipe(tmp_path, shared_data)
    lines: list[str] = []
    run_dir = run_recipe(recipe, start="ingest", stop="filter", echo=lines.append)
    assert (run_dir / "filter.parquet").exists() and not (run_dir / "dedup.parquet").exists()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with pytest.raises(CurationError, match=r"input .*filter.parquet is missing"):
        run_recipe(_recipe(fresh, shared_data), start="dedup", stop="dedup", echo=lines.append)
    with pytest.raises(CurationError, match="not among"):
        run_recipe(recipe, start="evolve", echo=lines.append)


def test_unknown_key_is_an_error_with_its_path(tmp_path, shared_data):
    recipe = _recipe(tmp_path, shared_data, filter={"refusal_treshold": 0.4})
    with pytest.raises(CurationError, match=r"filter\.refusal_treshold: unknown key"):
        load_recipe(recipe)


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\nsources: []\n")
    proc = subprocess.run([sys.executable, "-m", "curation", "run", str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "pwned" not in proc.stdout


@pytest.mark.parametrize("name", ["demo.yaml", "hermes3.yaml", "curate-existing.yaml"])
def test_shipped_recipes_validate(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    recipe = load_recipe(ROOT / "recipes" / name)
    assert recipe.stages[-1] == "card"
