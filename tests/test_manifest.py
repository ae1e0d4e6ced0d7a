"""Manifests record what ran, never a secret."""
from __future__ import annotations

import json

from curation.manifest import Manifest, manifest_path, scrub


def test_secret_keys_and_values_are_redacted(monkeypatch, tmp_path):
    monkeypatch.setenv("MY_SERVICE_API_KEY", "sk-verysecretvalue123")
    args = {"api_key": "sk-verysecretvalue123", "max_tokens": 256, "tokens_per_minute": 1000,
            "api_key_env": "MY_SERVICE_API_KEY", "note": "called with sk-verysecretvalue123", "auth_token": "abc"}
    clean = scrub(args)
    assert clean["api_key"] == "<redacted>" and clean["auth_token"] == "<redacted>"
    assert clean["max_tokens"] == 256 and clean["tokens_per_minute"] == 1000
    assert clean["api_key_env"] == "MY_SERVICE_API_KEY"
    assert "sk-verysecretvalue123" not in json.dumps(clean)

    src = tmp_path / "in.parquet"
    src.write_bytes(b"data")
    m = Manifest("filter", args, [src])
    path = m.write(tmp_path / "out.parquet")
    assert path == manifest_path(tmp_path / "out.parquet") == tmp_path / "out.manifest.json"
    text = path.read_text()
    assert "sk-verysecretvalue123" not in text
    recorded = json.loads(text)
    assert recorded["inputs"][0]["sha256"] == "3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7"
    assert recorded["stage"] == "filter" and recorded["package_version"]


def test_directory_output_keeps_its_manifest_inside(tmp_path):
    assert manifest_path(tmp_path / "pack") == tmp_path / "pack" / "manifest.json"
