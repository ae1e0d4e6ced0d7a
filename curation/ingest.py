"""Ingest: real chat data files -> the conversation table, nothing lost on the way.

Every record read leaves as one or more conversations (an OASST tree gives one per
root-to-leaf path) or as a reject row naming its file, line and reason. ``--strict``
stops at the first bad record instead, with the same one-line message.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from .errors import CurationError
from .formats import CONVERTERS, FORMATS, BadRecord, detect_format
from .io import concat_rejects, conversations_from_rows, rejects_from_rows
from .meta import update_meta
from .schema import CATEGORIES, conversation_id
from .stage import StageResult

DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".arrow")
STAGE = "ingest"


class IngestConfig(BaseModel):
    """Settings of `curate ingest` (recipe: each source's `format`, `source`, `category`)."""

    model_config = ConfigDict(extra="forbid")
    format: str = Field("auto", description="auto, or one of: " + ", ".join(FORMATS))
    source: str | None = Field(None, description="Source name for every row (default: the file's folder/name).")
    category: str | None = Field(None, description="Declared Table 1 category for every row.")
    strict: bool = Field(False, description="Stop at the first bad record instead of rejecting it.")


@dataclass
class Record:
    """One input record and where it was found (``line`` is 1-based; for JSON arrays, the item)."""

    value: Any
    line: int
    error: str | None = None  # set when the record could not even be parsed


# ----------------------------------------------------------------------------- reading

def _jsonl(path: Path, text: str) -> Iterator[Record]:
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield Record(json.loads(line), n)
        except ValueError as exc:
            yield Record(line[:500], n, f"invalid JSON ({exc.msg} at column {exc.colno})")


def _records_of_json(value: Any) -> tuple[list[Any], dict]:
    """A JSON document's records: an array, an object of arrays, or one record object."""
    if isinstance(value, list):
        return value, {}
    if isinstance(value, dict):
        if detect_format(value) is not None:
            return [value], {}
        arrays = {k: v for k, v in value.items() if isinstance(v, list) and v and all(isinstance(x, dict) for x in v)}
        if arrays:
            records = [r for v in arrays.values() for r in v]
            context = {k: v for k, v in value.items() if k not in arrays}
            return records, context
        return list(value.values()), {}
    return [value], {}


def read_records(path: Path) -> tuple[Iterator[Record], dict]:
    """The records of one data file, and file-level context (e.g. JailbreakBench parameters)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            rows = pq.read_table(path).to_pylist()
        except (pa.ArrowInvalid, OSError) as exc:
            raise CurationError(f"{path}: not a readable Parquet file ({exc})") from None
        return (Record(r, i + 1) for i, r in enumerate(rows)), {}
    if suffix == ".arrow":
        from datasets import Dataset

        return (Record(r, i + 1) for i, r in enumerate(Dataset.from_file(str(path)))), {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CurationError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if suffix == ".jsonl":
        return _jsonl(path, text), {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        if "Extra data" in str(exc):  # JSON Lines saved with a .json name (e.g. BFCL)
            return _jsonl(path, text), {}
        raise CurationError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    records, context = _records_of_json(value)
    return (Record(r, i + 1) for i, r in enumerate(records)), context


def _hf_dataset_rows(path: Path) -> Iterator[Record]:
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(str(path))
    splits = ds.values() if isinstance(ds, DatasetDict) else [ds]
    n = 0
    for split in splits:
        for row in split:
            n += 1
            yield Record(row, n)


def is_hf_dataset_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists())


def expand_sources(paths: list[Path]) -> list[tuple[Path, str]]:
    """Files (and saved HF datasets) to read, each with its default source name."""
    out: list[tuple[Path, str]] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise CurationError(f"{p}: no such file or directory")
        if p.is_file():
            out.append((p, f"{p.parent.name}/{p.name}" if p.parent.name else p.name))
        elif is_hf_dataset_dir(p):
            out.append((p, p.name))
        else:
            found = len(out)
            for f in sorted(p.rglob("*")):
                if is_hf_dataset_dir(f):
                    out.append((f, str(f.relative_to(p))))
                elif f.is_file() and f.suffix.lower() in DATA_SUFFIXES and not any(
                    is_hf_dataset_dir(parent) for parent in f.parents
                ):
                    out.append((f, str(f.relative_to(p))))
            if len(out) == found:
                raise CurationError(f"{p}: no data files ({', '.join(DATA_SUFFIXES)}) or saved datasets in this folder")
    return out


# ----------------------------------------------------------------------------- converting

def _reject_row(source: str, where: str, reason: str, detail: str, raw: Any, fmt: str | None) -> dict:
    raw_text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)
    return {
        "id": conversation_id([{"role": "raw", "content": f"{where}\n{raw_text}"}]),
        "messages": [],
        "source": source,
        "meta": json.dumps({"ingest": {"where": where, "format": fmt}, "raw": raw_text[:2000]}, ensure_ascii=False),
        "stage": STAGE,
        "reason": reason,
        "detail": f"{where}: {detail}",
    }


def ingest_file(
    path: Path, source: str, config: IngestConfig, advance: Callable[[int], None] | None = None
) -> tuple[list[dict], list[dict], dict]:
    """Kept rows, reject rows and per-file stats for one file (or saved HF dataset)."""
    if is_hf_dataset_dir(path):
        records, context = _hf_dataset_rows(path), {}
    else:
        records, context = read_records(path)
    fmt = None if config.format == "auto" else config.format
    file_generator = context.get("parameters", {}).get("model") if isinstance(context.get("parameters"), dict) else None
    kept: list[dict] = []
    rejected: list[dict] = []
    n_records = 0
    for rec in records:
        n_records += 1
        where = f"{path}:{rec.line}"
        if rec.error is None and fmt is None:
            fmt = detect_format(rec.value)
        try:
            if rec.error is not None:
                raise BadRecord("invalid_json", rec.error)
            if not isinstance(rec.value, dict):
                raise BadRecord("unknown_shape", f"a record is {type(rec.value).__name__}, not an object")
            if fmt is None:
                raise BadRecord("unknown_format", f"no known chat format fits keys {sorted(rec.value)[:8]}")
            converted = CONVERTERS[fmt](rec.value)
        except BadRecord as bad:
            if config.strict:
                raise CurationError(f"{where}: {bad.reason}: {bad.detail}") from None
            rejected.append(_reject_row(config.source or source, where, bad.reason, bad.detail, rec.value, fmt))
            continue
        for conv in converted:
            meta = {"ingest": {"file": str(path), "line": rec.line, "format": fmt}}
            if conv.own_id is not None:
                meta["ingest"]["source_id"] = conv.own_id
            meta.update(conv.extra)
            category = config.category or conv.category
            if category is not None:
                meta["category_source"] = "declared"
            kept.append(
                {
                    "id": conv.own_id or conversation_id(conv.messages),
                    "messages": conv.messages,
                    "source": config.source or source,
                    "generator": conv.generator or file_generator,
                    "category": category,
                    "meta": json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str),
                }
            )
        if advance:
            advance(1)
    stats = {"format": fmt, "records": n_records, "conversations": len(kept),
             "rejected": dict(Counter(r["reason"] for r in rejected))}
    return kept, rejected, stats


def _unique_ids(rows: list[dict]) -> None:
    """Ids must be unique within a table: a repeated id gets a ``~N`` suffix (noted in meta)."""
    seen: Counter[str] = Counter()
    for row in rows:
        seen[row["id"]] += 1
        if seen[row["id"]] > 1:
            original = row["id"]
            row["id"] = f"{original}~{seen[original]}"
            row["meta"] = update_meta(row["meta"], duplicate_source_id=original)


def ingest_paths(
    paths: list[Path],
    fmt: str = "auto",
    source: str | None = None,
    strict: bool = False,
    category: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> StageResult:
    """Read every source into one conversation table plus its rejects."""
    config = IngestConfig(format=fmt, source=source, strict=strict, category=category)
    return ingest(paths, config, progress)


def ingest(paths: list[Path], config: IngestConfig, progress: Callable[[int], None] | None = None) -> StageResult:
    return ingest_many([(list(paths), config)], progress)


def ingest_many(
    jobs: list[tuple[list[Path], IngestConfig]], progress: Callable[[int], None] | None = None
) -> StageResult:
    """Several sources, each with its own settings, into one table with unique ids."""
    kept: list[dict] = []
    rejected: list[dict] = []
    per_file: dict[str, dict] = {}
    for paths, config in jobs:
        if config.format != "auto" and config.format not in CONVERTERS:
            raise CurationError(f"unknown format '{config.format}' (choose auto or one of: {', '.join(FORMATS)})")
        if config.category is not None and config.category not in CATEGORIES:
            raise CurationError(f"unknown category '{config.category}' (choose one of: {', '.join(CATEGORIES)})")
        for path, source in expand_sources(paths):
            k, r, stats = ingest_file(path, source, config, progress)
            kept += k
            rejected += r
            per_file[str(path)] = stats
    _unique_ids(kept)
    records = sum(s["records"] for s in per_file.values())
    stats = {"files": per_file, "records": records, "conversations": len(kept)}
    return StageResult(conversations_from_rows(kept), concat_rejects([rejects_from_rows(rejected)]), stats)
