"""Run bookkeeping: every stage writes a manifest next to its output.

A manifest says what ran (stage, arguments, package version), on what (inputs with
their sha256), and what came of it (rows in, out and rejected by reason, stats,
duration). Arguments that look like secrets are never recorded.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from . import __version__
from .io import write_json_atomic

# A key names a secret when it is, or ends in, one of these words ("max_tokens" does not).
_SECRET_KEY = re.compile(r"(^|[_-])(api[_-]?key|apikey|secret|password|passwd|authorization|bearer|token|credentials?)$", re.I)
_SECRET_ENV = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD)", re.I)


def manifest_path(out: str | os.PathLike) -> Path:
    """``x.parquet`` -> ``x.manifest.json``; a directory output -> ``DIR/manifest.json``."""
    p = Path(out)
    if p.suffix == "":
        return p / "manifest.json"
    return p.with_suffix(".manifest.json")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    p = Path(path)
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode())
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def _secret_values() -> set[str]:
    return {v for k, v in os.environ.items() if _SECRET_ENV.search(k) and v and len(v) >= 8}


def scrub(obj, secrets: set[str] | None = None):
    """Drop secret-looking keys and any value equal to a secret in the environment."""
    secrets = _secret_values() if secrets is None else secrets
    if isinstance(obj, dict):
        return {
            k: ("<redacted>" if _SECRET_KEY.search(str(k)) and not str(k).endswith("_env") else scrub(v, secrets))
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [scrub(v, secrets) for v in obj]
    if isinstance(obj, str):
        for s in secrets:
            if s in obj:
                obj = obj.replace(s, "<redacted>")
        return obj
    return obj


def settings_hash(stage: str, args: dict, input_hashes: list[str]) -> str:
    """Hash of a stage's inputs and settings: unchanged hash, the stage may be skipped."""
    blob = json.dumps({"stage": stage, "args": scrub(args), "inputs": input_hashes}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class Manifest:
    """Collects one stage run's facts and writes them atomically at the end."""

    def __init__(self, stage: str, args: dict, inputs: list[str | os.PathLike]):
        self.stage = stage
        self.args = scrub(dict(args))
        self.inputs = [{"path": str(p), "sha256": sha256_file(p)} for p in inputs if Path(p).exists()]
        self.started = time.time()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.settings_hash = settings_hash(stage, args, [i["sha256"] for i in self.inputs])
        self.rows_in = 0
        self.rows_out = 0
        self.rejected_by_reason: Counter[str] = Counter()
        self.stats: dict = {}
        self.outputs: list[str] = []

    def count_rejects(self, reasons) -> None:
        self.rejected_by_reason.update(reasons)

    def to_dict(self) -> dict:
        rejected = sum(self.rejected_by_reason.values())
        return scrub(
            {
                "stage": self.stage,
                "package_version": __version__,
                "started_at": self.started_at,
                "duration_s": round(time.time() - self.started, 3),
                "args": self.args,
                "inputs": self.inputs,
                "outputs": self.outputs,
                "settings_hash": self.settings_hash,
                "rows_in": self.rows_in,
                "rows_out": self.rows_out,
                "rows_rejected": rejected,
                "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
                "stats": self.stats,
            }
        )

    def write(self, out: str | os.PathLike) -> Path:
        path = manifest_path(out)
        write_json_atomic(path, self.to_dict())
        return path


def read_manifest(path: str | os.PathLike) -> dict | None:
    p = Path(path)
    if not p.exists():
        return None
    return json.loads(p.read_text(encoding="utf-8"))
