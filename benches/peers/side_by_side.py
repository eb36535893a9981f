#!/usr/bin/env python3
"""Summarizes a side_by_side.sh run: per preset and op, Umbra's and OpenFHE's medians (median over
rounds of each round's median) and the ratio Umbra / OpenFHE. Prints a Markdown table."""
import glob
import json
import os
import statistics
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "bench-out/side"
PAIRS = {
    "N14_QP423_L6_S40": ("compute_N2^14", "compute"),
    "N15_QP750_L10_S45": ("compute_N2^15", "compute"),
    "N16_QP1690_L26_S50": ("compute_N2^16_bootmoduli", "n16"),
}
OPS = [("mul_relin", "EvalMult ct*ct (tensor+relin, no rescale)"), ("rescale", "Rescale"),
       ("rotate", "EvalRotate by 1")]


def umbra(preset):
    rounds = []
    for f in sorted(glob.glob(os.path.join(out, f"umbra_{preset}_r*.json"))):
        rows = [json.loads(l) for l in open(f) if l.strip()]
        rounds.append({r["op"]: r for r in rows})
    return rounds


def openfhe(cfg, kind):
    meds = {}
    pat = "openfhe_compute_r*.json" if kind == "compute" else "openfhe_n16_r*.json"
    for f in sorted(glob.glob(os.path.join(out, pat))):
        doc = json.load(open(f))
        results = doc["results"] if kind == "compute" else [doc]
        for r in results:
            if r.get("config") == cfg and r.get("threads", 2) == 2 or kind == "n16":
                for k, v in r["timings"].items():
                    meds.setdefault(k, []).append(v["median_s"] * 1e3)
    return meds


print("| preset | op | Umbra ms | OpenFHE ms | ratio | Umbra bits |")
print("| --- | --- | --- | --- | --- | --- |")
for preset, (cfg, kind) in PAIRS.items():
    u = umbra(preset)
    o = openfhe(cfg, kind)
    if not u or not o:
        continue
    for op, oname in OPS + [("mul_relin+rescale", None)]:
        if op == "mul_relin+rescale":
            um = statistics.median(r["mul_relin"]["ms"] + r["rescale"]["ms"] for r in u)
            om = statistics.median(a + b for a, b in zip(o[OPS[0][1]], o["Rescale"]))
            bits = statistics.median(r["rescale"]["precision_bits"] for r in u)
        else:
            um = statistics.median(r[op]["ms"] for r in u)
            om = statistics.median(o[oname])
            bits = statistics.median(r[op]["precision_bits"] for r in u)
        print(f"| {preset} | {op} | {um:.2f} | {om:.2f} | {um / om:.2f} | {bits:.1f} |")
