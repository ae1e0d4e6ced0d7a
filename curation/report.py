"""Report: the Hermes 3 Table 1 for your own data, the curation funnel and the packing.

Token counts come from the same tokenizer and ChatML template as the pack stage:
output tokens are exactly the tokens that carry a label (the trained ones), input
tokens are the rest. A packed directory is read from its per-sample index
(``samples.parquet``); a conversation Parquet is rendered and counted here.
"""
from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import CurationError
from .io import read_conversations, write_json_atomic, write_text_atomic, atomic_path
from .manifest import manifest_path, read_manifest, sha256_file
from .recipe import load_yaml, validation_message
from .schema import CATEGORIES, HERMES3_PROPORTIONS

UNTAGGED = "untagged"
SAMPLE_COLUMNS = ("conversation_id", "category", "source", "generator", "num_tokens", "num_loss_tokens")
REPORT_FILES = ("report.md", "report.json", "report.csv", "category_tokens.png")


class ReportConfig(BaseModel):
    """Settings of `curate report` (recipe section `report`; a top-level `targets` also counts)."""

    model_config = ConfigDict(extra="forbid")
    targets: dict[str, float] | None = Field(
        None, description="Target token proportion per Table 1 category; compared with the actual mix."
    )
    tokenizer: str = Field(
        "llama3", description="Tokenizer for a conversation Parquet input (the pack stage's: llama3 or PATH/tokenizer.json)."
    )
    special_tokens: dict[str, int] | None = Field(
        None, description="ChatML marker -> token id, as for pack (default: the pack stage's mapping)."
    )

    @field_validator("targets")
    @classmethod
    def _known_categories(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        unknown = sorted(set(value) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"unknown categories {unknown} (choose from: {', '.join(CATEGORIES)})")
        if any(v < 0 for v in value.values()):
            raise ValueError("proportions must be >= 0")
        total = sum(value.values())
        if not math.isclose(total, 1.0, abs_tol=0.01):
            raise ValueError(f"proportions sum to {total:.3f}, not 1")
        return value


def load_report_config(recipe: str | Path | None, **overrides) -> ReportConfig:
    """The recipe's `report` section; `targets` may also sit at the top level, and the
    tokenizer defaults to the pack section's so both stages count the same tokens."""
    data: dict = {}
    if recipe is not None:
        doc = load_yaml(recipe)
        data = dict(doc.get("report") or {})
        if "targets" not in data and "targets" in doc:
            data["targets"] = doc["targets"]
        pack = doc.get("pack") or {}
        for key in ("tokenizer", "special_tokens"):
            if key not in data and pack.get(key) is not None:
                data[key] = pack[key]
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ReportConfig.model_validate(data)
    except ValidationError as exc:
        raise CurationError(validation_message(recipe or "report", exc, "report")) from None


# ----------------------------------------------------------------------------- counting

def is_packed_dir(path: Path) -> bool:
    return path.is_dir() and (path / "samples.parquet").exists()


def samples_of_packed(pack_dir: Path) -> pa.Table:
    """Per packed sample: its conversation, category, source, generator and token counts."""
    table = pq.read_table(pack_dir / "samples.parquet")
    if "conversation_id" not in table.column_names and "id" in table.column_names:
        table = table.rename_columns(["conversation_id" if c == "id" else c for c in table.column_names])
    missing = [c for c in SAMPLE_COLUMNS if c not in table.column_names]
    if missing:
        raise CurationError(f"{pack_dir}/samples.parquet: missing columns {', '.join(missing)}")
    return table.select(list(SAMPLE_COLUMNS))


def samples_of_conversations(table: pa.Table, tokenizer) -> pa.Table:
    """Render every conversation as the pack stage does and count its tokens and labels."""
    import numpy as np

    from .render import IGNORE, tokenize_table

    tokenized = tokenize_table(table, tokenizer)
    n_loss = np.fromiter((int((labels != IGNORE).sum()) for labels in tokenized.labels), np.int64, len(tokenized))
    return pa.table(
        {
            "conversation_id": table.column("id"),
            "category": table.column("category"),
            "source": table.column("source"),
            "generator": table.column("generator"),
            "num_tokens": pa.array(tokenized.lengths(), pa.int64()),
            "num_loss_tokens": pa.array(n_loss, pa.int64()),
        }
    )


def _group(samples: pa.Table, key: str) -> dict:
    """key value -> {conversations, samples, input_tokens, output_tokens, total_tokens}."""
    table = samples.select([key, "conversation_id", "num_tokens", "num_loss_tokens"]).cast(
        pa.schema([(key, pa.string()), ("conversation_id", pa.string()), ("num_tokens", pa.int64()), ("num_loss_tokens", pa.int64())])
    )
    grouped = table.group_by(key).aggregate(
        [("conversation_id", "count_distinct"), ("conversation_id", "count"), ("num_tokens", "sum"), ("num_loss_tokens", "sum")]
    )
    out = {}
    for row in grouped.to_pylist():
        total, output = row["num_tokens_sum"] or 0, row["num_loss_tokens_sum"] or 0
        out[row[key]] = {
            "conversations": row["conversation_id_count_distinct"],
            "samples": row["conversation_id_count"],
            "input_tokens": total - output,
            "output_tokens": output,
            "total_tokens": total,
        }
    return out


def category_rows(samples: pa.Table) -> tuple[list[dict], dict]:
    """Table 1 rows (all eight categories in order, then untagged/unknown ones) and totals."""
    groups = _group(samples, "category")
    zero = {"conversations": 0, "samples": 0, "input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    keys = list(CATEGORIES) + sorted(k for k in groups if k is not None and k not in CATEGORIES)
    rows = [{"category": k, "name": CATEGORIES.get(k, k), **groups.get(k, zero)} for k in keys]
    if None in groups:
        rows.append({"category": UNTAGGED, "name": UNTAGGED, **groups[None]})
    totals = {k: sum(r[k] for r in rows) for k in zero}
    totals["conversations"] = pc.count_distinct(samples.column("conversation_id")).as_py()
    for row in rows:
        row["proportion"] = row["total_tokens"] / totals["total_tokens"] if totals["total_tokens"] else 0.0
    totals["proportion"] = 1.0 if totals["total_tokens"] else 0.0
    return rows, totals


def _ranked(samples: pa.Table, key: str) -> list[dict]:
    groups = _group(samples, key)
    rows = [{key: k if k is not None else "unknown", **v} for k, v in groups.items()]
    return sorted(rows, key=lambda r: (-r["total_tokens"], r[key]))


# ----------------------------------------------------------------------------- funnel

def _resolve(recorded: str, search_dirs: list[Path]) -> Path | None:
    """A manifest's input path: an absolute path as recorded; else a file of that name in
    the folders searched (the manifest's own folder first: runs/NAME/ holds all stages side
    by side); else the relative path from the working directory."""
    p = Path(recorded)
    if p.is_absolute() and p.exists():
        return p
    for folder in search_dirs:
        q = folder / p.name
        if q.exists():
            return q
    return p if p.exists() else None


def funnel(start: Path) -> list[dict]:
    """Stages from the first to ``start``'s, following each manifest's inputs back."""
    first = manifest_path(start)
    if not first.exists():
        return []
    search_dirs = [start.parent if start.is_file() else start, start.parent]
    order: list[dict] = []
    seen: set[Path] = set()

    def visit(mpath: Path, output: Path) -> None:
        seen.add(mpath.resolve())
        m = read_manifest(mpath) or {}
        stale = False
        for inp in m.get("inputs", []):
            path = _resolve(inp.get("path", ""), [mpath.parent] + search_dirs)
            if path is None:
                continue
            if inp.get("sha256") and path.is_file() and path.suffix == ".parquet" and sha256_file(path) != inp["sha256"]:
                stale = True
            upstream = manifest_path(path)
            if upstream.exists() and upstream.resolve() not in seen:
                visit(upstream, path)
        order.append(
            {
                "stage": m.get("stage", "?"),
                "output": str(output),
                "rows_in": m.get("rows_in", 0),
                "rows_out": m.get("rows_out", 0),
                "rows_rejected": m.get("rows_rejected", sum((m.get("rejected_by_reason") or {}).values())),
                "rejected_by_reason": dict(m.get("rejected_by_reason") or {}),
                "inputs_changed_since": stale,
            }
        )

    visit(first, start)
    return order


# ----------------------------------------------------------------------------- building

def packing_summary(pack_dir: Path) -> dict | None:
    path = pack_dir / "pack_stats.json"
    if not path.exists():
        return None
    stats = json.loads(path.read_text(encoding="utf-8"))
    shards = stats.get("shards") or []
    keys = ("seq_len", "tokenizer", "num_samples", "num_packs", "lower_bound_packs", "total_tokens", "loss_tokens", "efficiency")
    summary = {k: stats.get(k) for k in keys}
    summary["shards"] = [s.get("file") for s in shards]
    summary["dropped"] = stats.get("dropped") or {}
    return summary


def target_rows(rows: list[dict], targets: dict[str, float] | None) -> dict:
    """Actual vs target per category; the Hermes 3 Table 1 mix when the recipe sets none."""
    reference = targets if targets is not None else HERMES3_PROPORTIONS
    actual = {r["category"]: r["proportion"] for r in rows}
    table = [
        {
            "category": k,
            "name": name,
            "target": reference.get(k, 0.0),
            "actual": actual.get(k, 0.0),
            "difference": actual.get(k, 0.0) - reference.get(k, 0.0),
        }
        for k, name in CATEGORIES.items()
    ]
    return {"reference": "recipe" if targets is not None else "hermes3_table1", "rows": table}


def build_report(input_path: Path, config: ReportConfig) -> dict:
    """Every figure of the report, as one JSON-ready dict."""
    input_path = Path(input_path)
    if not input_path.exists():
        raise CurationError(f"{input_path}: no such file or directory")
    packing, tokenizer_info = None, None
    if input_path.is_dir():
        if not is_packed_dir(input_path):
            raise CurationError(f"{input_path}: not a packed directory (no samples.parquet); give a pack output or a conversation Parquet")
        samples = samples_of_packed(input_path)
        packing = packing_summary(input_path)
        tokenizer_info = (packing or {}).get("tokenizer")
        kind = "packed"
    else:
        from .tokenizer import load_tokenizer

        table = read_conversations(input_path)
        tokenizer = load_tokenizer(config.tokenizer, config.special_tokens)
        samples = samples_of_conversations(table, tokenizer)
        tokenizer_info = {"name": tokenizer.name, "sha256": tokenizer.sha256}
        kind = "conversations"
    rows, totals = category_rows(samples)
    return {
        "input": str(input_path),
        "kind": kind,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tokenizer": tokenizer_info,
        "categories": rows,
        "totals": totals,
        "sources": _ranked(samples, "source"),
        "generators": _ranked(samples, "generator"),
        "funnel": funnel(input_path),
        "packing": packing,
        "targets": target_rows(rows, config.targets),
    }


# ----------------------------------------------------------------------------- writing

def millions(n: int) -> str:
    """Tokens in millions, with enough decimals for a small run to show."""
    return f"{n / 1e6:.1f}" if n >= 10_000_000 else f"{n / 1e6:.3f}"


def percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def table1_markdown(report: dict) -> str:
    lines = [
        "| Category | Proportion | Tokens (M) | Conversations | Input tokens | Output tokens |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["categories"]:
        lines.append(
            f"| {r['name']} | {percent(r['proportion'])} | {millions(r['total_tokens'])} | {r['conversations']:,} "
            f"| {r['input_tokens']:,} | {r['output_tokens']:,} |"
        )
    t = report["totals"]
    lines.append(
        f"| **Total** | {percent(t['proportion'])} | {millions(t['total_tokens'])} | {t['conversations']:,} "
        f"| {t['input_tokens']:,} | {t['output_tokens']:,} |"
    )
    return "\n".join(lines)


def funnel_markdown(report: dict) -> str:
    steps = report["funnel"]
    if not steps:
        return "No stage manifests found next to the input."
    lines = ["| Stage | Output | Rows in | Rows out | Rejected | Rejects by reason |", "|---|---|---:|---:|---:|---|"]
    for s in steps:
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(s["rejected_by_reason"].items(), key=lambda kv: -kv[1])) or "-"
        flag = " (inputs changed since)" if s.get("inputs_changed_since") else ""
        lines.append(
            f"| {s['stage']}{flag} | `{Path(s['output']).name}` | {s['rows_in']:,} | {s['rows_out']:,} | {s['rows_rejected']:,} | {reasons} |"
        )
    return "\n".join(lines)


def packing_markdown(report: dict) -> str:
    p = report.get("packing")
    if not p:
        return ""
    tok = p.get("tokenizer") or {}
    tok_name = tok.get("name", tok) if isinstance(tok, dict) else tok
    dropped = ", ".join(f"{k} {v:,}" for k, v in (p.get("dropped") or {}).items()) or "none"
    overhead = p["num_packs"] / p["lower_bound_packs"] if p.get("lower_bound_packs") else float("nan")
    return "\n".join(
        [
            "| Figure | Value |",
            "|---|---:|",
            f"| Sequence length | {p['seq_len']:,} |",
            f"| Tokenizer | {tok_name} |",
            f"| Samples | {p['num_samples']:,} |",
            f"| Packs | {p['num_packs']:,} |",
            f"| Lower bound (ceil(tokens / seq_len)) | {p['lower_bound_packs']:,} |",
            f"| Packs / lower bound | {overhead:.4f} |",
            f"| Efficiency (tokens / (packs x seq_len)) | {100 * p['efficiency']:.2f}% |",
            f"| Tokens | {p['total_tokens']:,} |",
            f"| Trained (loss) tokens | {p['loss_tokens']:,} |",
            f"| Shards | {len(p['shards'])} |",
            f"| Dropped | {dropped} |",
        ]
    )


def targets_markdown(report: dict) -> str:
    t = report["targets"]
    head = "Target" if t["reference"] == "recipe" else "Hermes 3 (Table 1)"
    lines = [f"| Category | {head} | Actual | Difference (pp) |", "|---|---:|---:|---:|"]
    for r in t["rows"]:
        lines.append(f"| {r['name']} | {percent(r['target'])} | {percent(r['actual'])} | {100 * r['difference']:+.1f} |")
    return "\n".join(lines)


def report_markdown(report: dict) -> str:
    t = report["totals"]
    tok = report.get("tokenizer") or {}
    tok_name = tok.get("name", "?") if isinstance(tok, dict) else tok
    parts = [
        "# Data report",
        f"Input: `{report['input']}` ({report['kind']}), tokenizer {tok_name}, generated {report['generated_at']}.",
        f"{t['total_tokens']:,} tokens in {t['conversations']:,} conversations: {t['output_tokens']:,} output tokens "
        f"(trained) and {t['input_tokens']:,} input tokens (masked).",
        "## Composition (Table 1 layout)",
        "Proportion is each category's share of all tokens, as in Table 1 of the Hermes 3 report.",
        table1_markdown(report),
        "![tokens per category](category_tokens.png)",
        "## Curation funnel",
        funnel_markdown(report),
    ]
    if report.get("packing"):
        parts += ["## Packing", packing_markdown(report)]
    title = "Actual vs target" if report["targets"]["reference"] == "recipe" else "Actual vs the Hermes 3 mix"
    parts += [f"## {title}", targets_markdown(report)]
    return "\n\n".join(parts) + "\n"


def report_csv(report: dict) -> str:
    fields = ["category", "name", "conversations", "input_tokens", "output_tokens", "total_tokens", "proportion"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in report["categories"]:
        writer.writerow(row)
    writer.writerow({"category": "total", "name": "Total", **report["totals"]})
    return buf.getvalue()


def plot_category_tokens(report: dict, path: Path) -> None:
    """Horizontal stacked bars, input vs output tokens per category, labelled in M tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["categories"]
    names = [r["name"] for r in rows]
    inputs = [r["input_tokens"] / 1e6 for r in rows]
    outputs = [r["output_tokens"] / 1e6 for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 1.6), dpi=120)
    y = range(len(rows))
    ax.barh(y, outputs, color="#2b6cb0", label="output tokens (trained)")
    ax.barh(y, inputs, left=outputs, color="#a0aec0", label="input tokens (masked)")
    top = max((i + o for i, o in zip(inputs, outputs)), default=0) or 1
    for k, (i, o) in enumerate(zip(inputs, outputs)):
        label = f"{millions(int(round((i + o) * 1e6)))}M ({millions(int(round(o * 1e6)))}M out)" if i + o else "none"
        ax.text(i + o + top * 0.01, k, label, va="center", fontsize=8)
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.35)
    ax.set_xlabel("tokens (M)")
    total = report["totals"]
    ax.set_title(f"Tokens per category: {millions(total['total_tokens'])}M total, {millions(total['output_tokens'])}M trained")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / len(rows) - 0.08), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_report(report: dict, out_dir: Path) -> list[Path]:
    """report.md, report.json, report.csv and category_tokens.png in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in REPORT_FILES]
    write_text_atomic(paths[0], report_markdown(report))
    write_json_atomic(paths[1], report)
    write_text_atomic(paths[2], report_csv(report))
    plot_category_tokens(report, paths[3])
    return paths


def read_report(report_dir: Path) -> dict:
    path = Path(report_dir) / "report.json"
    if not path.exists():
        raise CurationError(f"{report_dir}: no report.json (run `curate report` first)")
    return json.loads(path.read_text(encoding="utf-8"))
