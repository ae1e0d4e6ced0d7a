"""Reading and writing stage tables: Parquet in, Parquet out, every write atomic."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import CurationError
from .schema import CONVERSATION_SCHEMA, REJECT_SCHEMA


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_table(table: pa.Table, path: str | os.PathLike) -> None:
    """Write a Parquet file atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _conform(table: pa.Table, schema: pa.Schema, path: str) -> pa.Table:
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise CurationError(f"{path}: not a conversation table (missing columns: {', '.join(missing)})")
    extra = [c for c in table.column_names if c not in schema.names]
    table = table.select(list(schema.names) + extra)
    try:
        base = table.select(list(schema.names)).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise CurationError(f"{path}: columns do not match the conversation schema ({exc})") from None
    for name in extra:
        base = base.append_column(table.schema.field(name), table.column(name))
    return base


def read_conversations(path: str | os.PathLike) -> pa.Table:
    """Read a conversation Parquet written by any stage, conformed to the schema."""
    p = Path(path)
    if not p.exists():
        raise CurationError(f"{p}: no such file")
    try:
        table = pq.read_table(p)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CurationError(f"{p}: not a readable Parquet file ({exc})") from None
    return _conform(table, CONVERSATION_SCHEMA, str(p))


def read_rejects(path: str | os.PathLike) -> pa.Table:
    p = Path(path)
    return _conform(pq.read_table(p), REJECT_SCHEMA, str(p))


def empty_conversations() -> pa.Table:
    return CONVERSATION_SCHEMA.empty_table()


def empty_rejects() -> pa.Table:
    return REJECT_SCHEMA.empty_table()


def conversations_from_rows(rows: list[dict]) -> pa.Table:
    """Build a conversation table from dict rows (missing optional fields become null)."""
    cols = {name: [r.get(name) for r in rows] for name in CONVERSATION_SCHEMA.names}
    return pa.Table.from_pydict(cols, schema=CONVERSATION_SCHEMA)


def rejects_from_rows(rows: list[dict]) -> pa.Table:
    cols = {name: [r.get(name) for r in rows] for name in REJECT_SCHEMA.names}
    return pa.Table.from_pydict(cols, schema=REJECT_SCHEMA)


def make_rejects(table: pa.Table, stage: str, reasons: list[str], details: list[str | None]) -> pa.Table:
    """Turn rows of a conversation table into reject rows carrying stage, reason and detail."""
    base = table.select(list(CONVERSATION_SCHEMA.names)).cast(CONVERSATION_SCHEMA)
    n = base.num_rows
    if len(reasons) != n or len(details) != n:
        raise ValueError("one reason and one detail per rejected row")
    base = base.append_column("stage", pa.array([stage] * n, pa.string()))
    base = base.append_column("reason", pa.array(reasons, pa.string()))
    return base.append_column("detail", pa.array(details, pa.string()))


def concat_rejects(tables: list[pa.Table]) -> pa.Table:
    tables = [t.select(list(REJECT_SCHEMA.names)).cast(REJECT_SCHEMA) for t in tables if t is not None]
    return pa.concat_tables(tables) if tables else empty_rejects()
