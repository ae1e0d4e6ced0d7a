"""Card: a Hugging Face dataset card written from a report, to publish with the shards.

The YAML header is built as data and dumped with ``yaml.safe_dump`` (so quoting is always
valid); the prose lives in ``curation/assets/card_template.md`` (linked as ``data_cards/TEMPLATE.md``) with ``$name`` placeholders
(``string.Template``), so a user edits the wording without touching code.
"""
from __future__ import annotations

import re
from pathlib import Path
from string import Template

import yaml
from pydantic import BaseModel, ConfigDict, Field

from .errors import CurationError
from .schema import CATEGORIES
from .report import funnel_markdown, packing_markdown, percent, table1_markdown

# Ships inside the package (data_cards/TEMPLATE.md links to it), so a plain install finds it.
DEFAULT_TEMPLATE = Path(__file__).resolve().parent / "assets" / "card_template.md"
# Hugging Face's size_categories bins, by number of rows.
_SIZE_BINS = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


class CardConfig(BaseModel):
    """Settings of `curate card` (recipe section `card`)."""

    model_config = ConfigDict(extra="forbid")
    pretty_name: str | None = Field(None, description="Title of the card (default: the card file's name).")
    license: str = Field("other", description="Licence id of the published data; 'other' when sources' terms differ.")
    language: list[str] = Field(["en"], description="ISO 639-1 codes of the text.")
    task_categories: list[str] = Field(["text-generation"], description="Hugging Face task categories.")
    tags: list[str] = Field(["sft", "chatml", "hermes-3", "packed"], description="Free tags for the Hub.")
    data_files: str | None = Field(
        None, description="Glob of the Arrow shards, relative to where the card is published (default: from the shard names)."
    )
    summary: str | None = Field(None, description="One paragraph on what the data is (default: generated from the report).")
    template: str | None = Field(None, description="Card template with $placeholders (default: the packaged template, linked as data_cards/TEMPLATE.md).")


def size_category(n: int) -> str:
    for limit, name in _SIZE_BINS:
        if n < limit:
            return name
    return "n>1B"


def shard_glob(shards: list[str]) -> str:
    """`data-00000-of-00004.arrow`, ... -> `data-*.arrow`: the shards and nothing else."""
    names = [Path(s).name for s in shards]
    if not names:
        return "*.arrow"
    stems = {re.split(r"\d", n, maxsplit=1)[0] for n in names}
    return f"{stems.pop()}*.arrow" if len(stems) == 1 else "*.arrow"


def card_header(report: dict, config: CardConfig, pretty_name: str) -> dict:
    packing = report.get("packing") or {}
    rows = packing.get("num_packs") if packing else report["totals"]["conversations"]
    data_files = config.data_files or shard_glob(packing.get("shards") or [])
    return {
        "pretty_name": pretty_name,
        "license": config.license,
        "language": list(config.language),
        "task_categories": list(config.task_categories),
        "tags": list(config.tags),
        "size_categories": [size_category(rows or 0)],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": data_files}]}],
    }


def _ranked_markdown(rows: list[dict], key: str, title: str) -> str:
    if not rows:
        return "None recorded."
    lines = [f"| {title} | Conversations | Tokens | Output tokens |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r[key]} | {r['conversations']:,} | {r['total_tokens']:,} | {r['output_tokens']:,} |")
    return "\n".join(lines)


def default_summary(report: dict) -> str:
    t = report["totals"]
    present = [r["name"] for r in report["categories"] if r["total_tokens"] and r["category"] != "untagged"]
    packing = report.get("packing")
    packed = (
        f" packed into {packing['num_packs']:,} sequences of {packing['seq_len']:,} tokens" if packing else ""
    )
    return (
        f"Supervised fine-tuning conversations curated in the manner of the Hermes 3 technical report: "
        f"{t['conversations']:,} conversations, {t['total_tokens']:,} tokens ({t['output_tokens']:,} trained output tokens, "
        f"{t['input_tokens']:,} masked input tokens){packed}, covering "
        + ("all eight" if len(present) == len(CATEGORIES) else f"{len(present)} of the eight")
        + " Table 1 categories."
    )


def limitations(report: dict) -> str:
    """Bullets the figures themselves call for: empty categories, the mix, untagged and dropped rows."""
    bullets = []
    empty = [r["name"] for r in report["categories"] if r["category"] != "untagged" and not r["total_tokens"]]
    if empty:
        bullets.append(f"No data in: {', '.join(empty)}.")
    targets = report.get("targets") or {}
    rows = targets.get("rows") or []
    off = sorted((r for r in rows if abs(r["difference"]) >= 0.05), key=lambda r: -abs(r["difference"]))
    if off:
        ref = "the recipe's target" if targets.get("reference") == "recipe" else "the Hermes 3 mix"
        parts = [f"{r['name']} {percent(r['actual'])} against {percent(r['target'])}" for r in off]
        bullets.append(f"The token mix departs from {ref} by 5 points or more: {'; '.join(parts)}.")
    untagged = next((r for r in report["categories"] if r["category"] == "untagged"), None)
    if untagged:
        bullets.append(f"{percent(untagged['proportion'])} of tokens carry no category (untagged).")
    dropped = (report.get("packing") or {}).get("dropped") or {}
    if dropped:
        bullets.append("Dropped at packing: " + ", ".join(f"{k} {v:,}" for k, v in dropped.items()) + ".")
    return "\n".join(f"- {b}" for b in bullets) if bullets else "- None found in the figures."


def render_card(report: dict, config: CardConfig, name: str) -> str:
    """The card's full text: YAML front matter, then the template filled from the report."""
    template_path = Path(config.template) if config.template else DEFAULT_TEMPLATE
    if not template_path.exists():
        raise CurationError(f"{template_path}: no card template (pass --template)")
    pretty_name = config.pretty_name or name
    header = yaml.safe_dump(card_header(report, config, pretty_name), sort_keys=False, allow_unicode=True)
    packing = packing_markdown(report) or "Not packed: the report was made from a conversation Parquet."
    values = {
        "pretty_name": pretty_name,
        "summary": config.summary or default_summary(report),
        "composition": table1_markdown(report),
        "sources": _ranked_markdown(report.get("sources") or [], "source", "Source"),
        "generators": _ranked_markdown(report.get("generators") or [], "generator", "Generator"),
        "funnel": funnel_markdown(report),
        "packing": packing,
        "data_files": card_header(report, config, pretty_name)["configs"][0]["data_files"][0]["path"],
        "limitations": limitations(report),
        "report_input": report["input"],
        "generated_at": report["generated_at"],
    }
    try:
        body = Template(template_path.read_text(encoding="utf-8")).substitute(values)
    except (KeyError, ValueError) as exc:
        raise CurationError(f"{template_path}: bad placeholder {exc} (known: {', '.join(sorted(values))})") from None
    return f"---\n{header}---\n\n{body.lstrip()}"
