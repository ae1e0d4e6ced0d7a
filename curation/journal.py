"""The request journal: one JSONL line per finished LLM request, so a killed run resumes.

Each line holds the request's fingerprint (sha256 of model, messages and params as
canonical JSON), the request itself and what came back. Nothing else: no headers, no
key. Lines are flushed one by one, so a SIGKILL can at worst tear the last line, which
loading drops (and cuts off the file, so the next append starts on a clean line).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, TextIO

from .errors import CurationError


def canonical_json(value: Any) -> str:
    """One spelling per value: sorted keys, no spaces, unicode kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(model: str, messages: list[dict], params: dict) -> str:
    """Identity of a request: same model, messages and params, same answer to reuse."""
    payload = canonical_json({"model": model, "messages": messages, "params": params})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def load_journal(path: Path) -> dict[str, dict]:
    """Fingerprint -> journaled record. The first record of a fingerprint wins (duplicates
    collapse); an unparsable last line (torn by a kill) is dropped and cut from the file."""
    if not path.exists():
        return {}
    records: dict[str, dict] = {}
    data = path.read_bytes()
    lines = data.split(b"\n")
    offset = 0
    for number, line in enumerate(lines, start=1):
        is_last = number == len(lines)
        if line.strip():
            try:
                record = json.loads(line)
                fp = record["fingerprint"]
            except (ValueError, KeyError, TypeError):
                if is_last or not any(rest.strip() for rest in lines[number:]):
                    _truncate(path, offset)
                    break
                raise CurationError(f"{path}:{number}: corrupt journal line (delete the journal to start over)") from None
            records.setdefault(fp, record)
        offset += len(line) + 1
    return records


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(size)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


class JournalWriter:
    """Appends one record per line and flushes each, so finished work survives a kill."""

    def __init__(self, path: Path, fsync: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fsync = fsync
        self._fh: TextIO = open(path, "a", encoding="utf-8")
        if self._fh.tell() and not _ends_with_newline(path):
            self._fh.write("\n")  # a complete record cut just before its newline


    def append(self, record: dict) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "JournalWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
