"""Shared fixtures: the real public data beside the project root (../shared/data)."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED.is_dir(), f"the shared data is expected at {SHARED}"
    return SHARED
