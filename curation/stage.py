"""What every table stage returns, and the thin runner the CLI and `curate run` share.

A stage core is a pure function ``(pa.Table, Config) -> StageResult``; it never reads
or writes files, so the same function can later run batch by batch under Ray Data.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa

from .io import read_conversations, write_table
from .manifest import Manifest


@dataclass
class StageResult:
    kept: pa.Table
    rejected: pa.Table
    stats: dict = field(default_factory=dict)

    def rejected_by_reason(self) -> Counter[str]:
        if self.rejected.num_rows == 0:
            return Counter()
        return Counter(self.rejected.column("reason").to_pylist())


def run_table_stage(
    stage: str,
    core: Callable[[pa.Table], StageResult],
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    rejects_path: str | os.PathLike | None,
    args: dict,
) -> tuple[StageResult, Manifest]:
    """Read IN, run the core, write OUT, REJECTS and OUT's manifest; check nothing was lost."""
    manifest = Manifest(stage, args, [in_path])
    table = read_conversations(in_path)
    result = core(table)
    n_in, n_out, n_rej = table.num_rows, result.kept.num_rows, result.rejected.num_rows
    if n_in != n_out + n_rej:
        raise AssertionError(f"{stage}: rows in {n_in} != kept {n_out} + rejected {n_rej}")
    write_table(result.kept, out_path)
    manifest.outputs.append(str(out_path))
    if rejects_path is not None:
        write_table(result.rejected, rejects_path)
        manifest.outputs.append(str(rejects_path))
    manifest.rows_in, manifest.rows_out = n_in, n_out
    manifest.count_rejects(result.rejected_by_reason().elements())
    manifest.stats = result.stats
    manifest.write(out_path)
    return result, manifest


def default_rejects_path(out_path: str | os.PathLike) -> Path:
    p = Path(out_path)
    return p.with_name(p.stem + ".rejects.parquet")
