"""`curate run RECIPE`: every stage in order into ``runs/NAME/``, each output beside its manifest.

A stage whose inputs (sha256) and settings are unchanged since its manifest was written is
skipped; an interrupted generation stage resumes from its journal; ``--from``/``--to`` run
a slice. The recipe is one pydantic model whose sections are the stages' own config models,
so a recipe key, a CLI flag and a manifest field are one name for one thing.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .card import CardConfig
from .client import EndpointConfig
from .dedup import DedupConfig
from .errors import CurationError
from .evolve import EvolveConfig
from .filter import FilterConfig
from .manifest import read_manifest, settings_hash, sha256_file
from .pack import PackConfig
from .recipe import load_yaml, validation_message
from .report import ReportConfig
from .respond import RespondConfig
from .schema import Category
from .tag import TagConfig

STAGES = ("ingest", "evolve", "respond", "filter", "dedup", "tag", "pack", "report", "card")
StageName = Literal["ingest", "evolve", "respond", "filter", "dedup", "tag", "pack", "report", "card"]


class SourceSpec(BaseModel):
    """One input of the ingest stage."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="File or folder, relative to the working directory.")
    format: str = Field("auto", description="auto, sharegpt, openai, alpaca, hh, oasst, qa, prompt, toolbench, bfcl")
    category: Category | None = Field(None, description="Declared Table 1 category of every row of this source.")
    source: str | None = Field(None, description="Source name for every row (default: folder/file name).")


class Recipe(BaseModel):
    """A whole pipeline run. Unknown keys are errors, reported with their path."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Run name: outputs go to RUNS_DIR/NAME/.")
    description: str | None = None
    runs_dir: str = Field("runs", description="Folder of the run folders, relative to the working directory.")
    stages: list[StageName] = Field(default_factory=lambda: list(STAGES), description="Stages to run, in pipeline order.")
    sources: list[SourceSpec]
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)
    evolve: EvolveConfig = Field(default_factory=EvolveConfig)
    respond: RespondConfig = Field(default_factory=RespondConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    tag: TagConfig = Field(default_factory=TagConfig)
    pack: PackConfig = Field(default_factory=PackConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    card: CardConfig = Field(default_factory=CardConfig)


def load_recipe(path: str | Path) -> Recipe:
    """Load and validate a recipe. Paths in it are relative to the working directory, as
    with every `curate` command (run from the project root, as `make` does)."""
    path = Path(path)
    data = load_yaml(path)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise CurationError(validation_message(path, exc)) from None
    order = [s for s in STAGES if s in recipe.stages]
    if order != list(recipe.stages):
        raise CurationError(f"{path}: stages must be in pipeline order: {', '.join(order)}")
    return recipe


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 of the package's code and shipped assets (tagger model, prompts, card template).

    Part of every stage's skip test: after an upgrade that changes a rule or the tagger model,
    `curate run` redoes the stages instead of keeping outputs the new code would not write.
    Generation stages replay their journals, so a rerun sends no request twice.
    """
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@dataclass
class Step:
    """One stage of a run: where it reads and writes, and how it runs."""

    name: str
    inputs: list[Path]
    output: Path
    rejects: Path | None
    settings: dict
    execute: Callable[[], None]

    @property
    def manifest(self) -> Path:
        from .manifest import manifest_path

        return manifest_path(self.output)

    def settings_hash(self) -> str:
        settings = {**self.settings, "curation_code": code_fingerprint()}
        return settings_hash(self.name, settings, [sha256_file(p) for p in self.inputs if p.exists()])

    def up_to_date(self) -> bool:
        recorded = read_manifest(self.manifest)
        return bool(recorded) and self.output.exists() and recorded.get("run_settings_hash") == self.settings_hash()


# ----------------------------------------------------------------------------- the steps

def _record(step: Step) -> None:
    """Stamp the stage's manifest with the run's settings hash (the skip test), writing a
    manifest first for a stage that does not keep one of its own."""
    from .io import write_json_atomic
    from .manifest import Manifest

    recorded = read_manifest(step.manifest)
    if recorded is None:
        m = Manifest(step.name, step.settings, step.inputs)
        m.outputs = [str(step.output)]
        recorded = {k: v for k, v in m.to_dict().items() if not k.startswith("rows_") and k != "rejected_by_reason"}
    recorded["run_settings_hash"] = step.settings_hash()
    write_json_atomic(step.manifest, recorded)


def call_command(name: str, **kwargs) -> None:
    """Call ``curate NAME`` in-process: its typer function with the given arguments and
    every other option at its default. The runner and the CLI thus run the same code."""
    import importlib
    import inspect

    fn = importlib.import_module(f".commands.{name}", __package__).command
    for param in inspect.signature(fn).parameters.values():
        if param.name not in kwargs:
            kwargs[param.name] = getattr(param.default, "default", param.default)
    fn(**kwargs)


# Each stage's output inside the run folder, and the command arguments that produce it
# from its input (every stage also reads its recipe section through --config).
OUTPUTS = {
    "ingest": "ingest.parquet", "evolve": "evolve.parquet", "respond": "respond.parquet",
    "filter": "filter.parquet", "dedup": "dedup.parquet", "tag": "tag.parquet",
    "pack": "pack", "report": "report", "card": "card.md",
}


def plan(recipe: Recipe, recipe_path: Path, run_dir: Path) -> list[Step]:
    """The recipe's stages as steps, each reading the previous enabled stage's output."""
    steps: list[Step] = []
    current: Path | None = None
    recipe_path = Path(recipe_path)
    for name in recipe.stages:
        out = run_dir / OUTPUTS[name]
        cfg = getattr(recipe, name, None)
        settings = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else {}
        if name in ("evolve", "respond") or (name == "tag" and recipe.tag.method in ("llm", "hybrid")):
            settings["endpoint"] = recipe.endpoint.model_dump(mode="json")
        if name == "ingest":
            settings = {"sources": [s.model_dump() for s in recipe.sources]}
            steps.append(_ingest_step(recipe, run_dir, settings))
            current = steps[-1].output
            continue
        src = _need(current, name)
        rejects = run_dir / f"{name}.rejects.parquet"
        if name == "report":
            kwargs = {"input": src, "out": out, "recipe": recipe_path}
            inputs, rejects = [src], None
        elif name == "card":
            kwargs = {"report_dir": src, "out": out, "recipe": recipe_path, "pretty_name": recipe.card.pretty_name or recipe.name}
            inputs, rejects = [src / "report.json"], None
        else:
            kwargs = {"src": src, "out": out, "rejects": rejects, "config": recipe_path}
            inputs = [src]
        steps.append(Step(name, inputs, out, rejects, settings, lambda n=name, kw=kwargs: call_command(n, **kw)))
        current = out
    return steps


def _need(current: Path | None, name: str) -> Path:
    if current is None:
        raise CurationError(f"stage {name} needs an earlier stage's output: add `ingest` to the recipe's stages")
    return current


def _ingest_step(recipe: Recipe, run_dir: Path, settings: dict) -> Step:
    out, rej = run_dir / OUTPUTS["ingest"], run_dir / "ingest.rejects.parquet"

    def execute() -> None:
        from .commands.ingest import execute as ingest_execute
        from .ingest import IngestConfig

        jobs = [([Path(s.path)], IngestConfig(format=s.format, source=s.source, category=s.category)) for s in recipe.sources]
        ingest_execute(jobs, out, rej, settings)

    return Step("ingest", [Path(s.path) for s in recipe.sources], out, rej, settings, execute)


# ----------------------------------------------------------------------------- running

def select(steps: list[Step], start: str | None, stop: str | None) -> list[Step]:
    names = [s.name for s in steps]
    for bound in (start, stop):
        if bound is not None and bound not in names:
            raise CurationError(f"stage '{bound}' is not among this recipe's stages ({', '.join(names)})")
    i = names.index(start) if start else 0
    j = names.index(stop) + 1 if stop else len(steps)
    if i >= j:
        raise CurationError(f"--from {start} comes after --to {stop}")
    return steps[i:j]


def run_recipe(
    path: str | Path, start: str | None = None, stop: str | None = None, force: bool = False,
    echo: Callable[[str], None] = print,
) -> Path:
    """Run (a slice of) a recipe; returns the run folder."""
    import time

    recipe = load_recipe(path)
    run_dir = Path(recipe.runs_dir) / recipe.name
    run_dir.mkdir(parents=True, exist_ok=True)
    for step in select(plan(recipe, Path(path), run_dir), start, stop):
        missing = [p for p in step.inputs if not p.exists()]
        if missing:
            raise CurationError(f"stage {step.name}: input {missing[0]} is missing (run the earlier stages first)")
        if not force and step.up_to_date():
            echo(f"[{step.name}] up to date, skipped ({step.output})")
            continue
        echo(f"[{step.name}] running -> {step.output}")
        t0 = time.time()
        step.manifest.unlink(missing_ok=True)  # a stale manifest must not be stamped as new
        step.execute()
        _record(step)
        echo(f"[{step.name}] done in {time.time() - t0:.1f}s{_counts(step)}")
    return run_dir


def _counts(step: Step) -> str:
    m = read_manifest(step.manifest) or {}
    if "rows_in" not in m:
        return ""
    rejected = ", ".join(f"{k} {v}" for k, v in m.get("rejected_by_reason", {}).items())
    return f": {m['rows_in']} in, {m['rows_out']} out" + (f" (rejected: {rejected})" if rejected else "")
