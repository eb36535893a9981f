#!/usr/bin/env python3
"""OpenFHE mul+relin, rescale and rotate at N=2^16 with the bootstrapping moduli of
../shared/peers/openfhe_ckks_bench.py (HEStd_128_classic, scale 59, first modulus 60, dnum 4,
depth 22, log QP ~1718), FIXEDMANUAL so that Rescale is timed on its own.

The shared script times only bootstrapping at N=2^16; this one times the compute ops on the same
modulus so that `umbra bench ops --preset N16_...` has a side-by-side figure. It reuses the shared
script's timing helper. Run with the peers venv (../shared/peers/README.md):

    OMP_NUM_THREADS=2 /tmp/peers-venv/bin/python benches/peers/openfhe_n16_ops.py [--out FILE]
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.environ.get("UMBRA_PEERS_DIR", os.path.join(HERE, "..", "..", "..", "shared", "peers"))
sys.path.insert(0, PEERS)
import openfhe_ckks_bench as peer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import numpy as np
    import openfhe as o

    n = 1 << 16
    slots = n // 2
    params = peer.make_params(o, n=n, depth=22, scale_bits=59, first_mod_bits=60, dnum=4,
                              scaling=o.FIXEDMANUAL, batch=slots)
    cc = o.GenCryptoContext(params)
    for feat in (o.PKE, o.KEYSWITCH, o.LEVELEDSHE):
        cc.Enable(feat)
    kp = cc.KeyGen()
    cc.EvalMultKeyGen(kp.secretKey)
    cc.EvalRotateKeyGen(kp.secretKey, [1])
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, slots)
    y = rng.uniform(-1, 1, slots)
    cx = cc.Encrypt(kp.publicKey, cc.MakeCKKSPackedPlaintext(x))
    cy = cc.Encrypt(kp.publicKey, cc.MakeCKKSPackedPlaintext(y))
    T = {}
    T["EvalMult ct*ct (tensor+relin, no rescale)"] = peer.bench(lambda: cc.EvalMult(cx, cy), max_reps=10)
    cm = cc.EvalMult(cx, cy)
    T["Rescale"] = peer.bench(lambda: cc.Rescale(cm), max_reps=10)
    T["EvalRotate by 1"] = peer.bench(lambda: cc.EvalRotate(cx, 1), max_reps=10)
    logq = __import__("math").log2(cc.GetElementParams().GetModulus())
    out = {"config": "compute_N2^16_bootmoduli", "omp_threads": peer.omp_max_threads(),
           "log2_Q": round(logq, 1), "timings": T}
    for k, v in T.items():
        print(f"{k:45s} median {v['median_s'] * 1e3:9.1f} ms  min {v['min_s'] * 1e3:9.1f} ms")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
