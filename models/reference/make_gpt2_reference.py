#!/usr/bin/env python3
"""Writes models/reference/gpt2-tiny.json: what Hugging Face's GPT-2 tokenizer and
GPT2LMHeadModel compute on the directory `umbra gen-model --arch gpt2-tiny --seed 1` writes. The
Rust tests (tests/models_gpt2.rs) regenerate that directory, check its SHA-256 against the one
recorded here, and compare Umbra's tokenizer and plaintext GPT-2 against it.

    python3 -m venv /tmp/venv-ref && /tmp/venv-ref/bin/pip install torch transformers
    models/fetch.sh gpt2-tokenizer
    cargo run --release -- gen-model --arch gpt2-tiny --seed 1 --out /tmp/gpt2-tiny
    /tmp/venv-ref/bin/python models/reference/make_gpt2_reference.py /tmp/gpt2-tiny [OUT_JSON]

Tokenizer cases: ids of texts with leading and repeated spaces, accents, CJK and emoji, and the
decoded text. Model cases, per prompt: the ids, each position's top-1 id (`argmax`), the last
position's logits over the first 256 ids and over its top 8 (`top_ids`, `top_logits`), the
standard deviation of the last logits (`logit_std`, the scale errors are measured in), and HF's
greedy continuation of 8 tokens (`generate(do_sample=False)`). Floats keep 8 significant digits
(the model computes in f32).
"""
import hashlib
import json
import os
import sys

import torch
import transformers
from transformers import GPT2LMHeadModel, GPT2TokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = sys.argv[1]
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "gpt2-tiny.json")

TEXTS = [
    "Hello world",
    " leading space and  two spaces",
    "Crème brûlée in Zürich costs 12,50 € — naïve?",
    "東京は日本の首都です。 Tokyo 🗼 is big 👍🏽!",
    "line one\nline two\ttab\r\n",
    "<|endoftext|> is a special token",
    "",
]

PROMPTS = [
    "Hello world",
    "Encrypted inference keeps my text private because",
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
    "1, 2, 3, 4,",
]


def g(x):
    return float(f"{x:.8g}")


def main():
    tok = GPT2TokenizerFast.from_pretrained(MODEL)
    model = GPT2LMHeadModel.from_pretrained(MODEL, torch_dtype=torch.float32)
    model.eval()
    with open(os.path.join(MODEL, "model.safetensors"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    tokenizer_cases = []
    for t in TEXTS:
        ids = tok.encode(t)
        tokenizer_cases.append({"text": t, "ids": ids, "decoded": tok.decode(ids)})
    model_cases = []
    for p in PROMPTS:
        ids = tok.encode(p)
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double()
            cont = model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=8,
                do_sample=False,
                pad_token_id=50256,
            )[0][len(ids):].tolist()
        last = logits[-1]
        top = torch.topk(last, 8)
        model_cases.append(
            {
                "prompt": p,
                "ids": ids,
                "argmax": logits.argmax(dim=-1).tolist(),
                "logits_head": [g(x) for x in last[:256].tolist()],
                "top_ids": top.indices.tolist(),
                "top_logits": [g(x) for x in top.values.tolist()],
                "logit_std": g(last.std(unbiased=False).item()),
                "greedy": cont,
            }
        )
    doc = {
        "model": "gpt2-tiny",
        "source": "umbra gen-model --arch gpt2-tiny --seed 1 (tokenizer: models/fetch.sh gpt2-tokenizer)",
        "model_safetensors_sha256": digest,
        "made_by": "models/reference/make_gpt2_reference.py",
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
        "tokenizer_cases": tokenizer_cases,
        "model_cases": model_cases,
    }
    head = {k: v for k, v in doc.items() if not k.endswith("_cases")}
    lines = [f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}," for k, v in head.items()]
    parts = []
    for key in ("tokenizer_cases", "model_cases"):
        body = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in doc[key])
        parts.append(f' "{key}": [\n' + body + "\n ]")
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("{\n" + "\n".join(lines) + "\n" + ",\n".join(parts) + "\n}\n")
    print(f"wrote {OUT}: {len(tokenizer_cases)} texts, {len(model_cases)} prompts")


if __name__ == "__main__":
    main()
