#!/usr/bin/env bash
# Writes models/eval/pyjokes-en.txt: 283 real English sentences that nobody on the Umbra project
# wrote, one per line, for `umbra eval` (never committed: models/*/ is ignored).
#
#   models/eval_sentences.sh
#
# They are the English jokes of the PyPI package pyjokes 0.8.3 (BSD licence; 180 "neutral" and 103
# "chuck" jokes by its contributors): short programmer jokes of 4 to ~60 word pieces, with
# punctuation, quotes, numbers and code words. pip downloads the wheel (no install); the jokes are
# read from pyjokes/jokes_en.py. Set PYTHON to choose the interpreter whose pip is used.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-python3}"
out="$here/eval/pyjokes-en.txt"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" pyjokes==0.8.3
"$py" - "$tmp" "$out" <<'PY'
import glob, os, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(tmp, "pyjokes-0.8.3-*.whl"))[0]
zipfile.ZipFile(whl).extractall(tmp)
sys.path.insert(0, tmp)
from pyjokes.jokes_en import jokes_en
lines = [" ".join(j.split()) for j in jokes_en["neutral"] + jokes_en["chuck"]]
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as f:
    f.write("\n".join(lines) + "\n")
print(f"{out}: {len(lines)} sentences (pyjokes 0.8.3, BSD)")
PY
