#!/usr/bin/env python3
"""scikit-learn side of the PCA benchmark (run beside examples/pca_bench.rs on the same matrix).

    cargo run --release --example pca_bench -- --source fashion-mnist --k 50,100,200 --dump /tmp/fm.f32
    python bench/pca_sklearn.py --raw /tmp/fm.f32 --shape 60000x784 --k 50,100,200 \
        --solvers covariance_eigh,randomized,full --timeout 600

Each fit runs in its own process (clean peak-RSS figure, and a timeout that really stops it).
Reported MSE is the training reconstruction error computed directly (float64 accumulation).
"""
import argparse
import json
import resource
import subprocess
import sys
import time


def one(raw, n, d, solver, k, seed):
    import numpy as np
    from sklearn.decomposition import PCA

    x = np.fromfile(raw, dtype="<f4").reshape(n, d)
    t = time.perf_counter()
    pca = PCA(n_components=k, svd_solver=solver, random_state=seed).fit(x)
    secs = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sse = 0.0
    for s in range(0, n, 4096):
        b = x[s:s + 4096]
        r = b - pca.inverse_transform(pca.transform(b))
        sse += float(np.sum(r.astype(np.float64) ** 2))
    print(json.dumps({"solver": solver, "k": k, "time_s": secs, "mse": sse / (n * d), "peak_bytes": peak}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--shape", required=True, help="NxD")
    ap.add_argument("--k", default="50,100,200")
    ap.add_argument("--solvers", default="covariance_eigh,randomized")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--one", nargs=2, metavar=("SOLVER", "K"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    n, d = (int(v) for v in a.shape.split("x"))
    if a.one:
        one(a.raw, n, d, a.one[0], int(a.one[1]), a.seed)
        return
    import sklearn
    print(f"scikit-learn {sklearn.__version__}, data {n} x {d} ({n * d * 4 / 1e6:.0f} MB f32)")
    print(f"{'solver':<16} {'k':>6} {'time_s':>9} {'mse':>12} {'peak_MB':>10} {'x_data':>8}")
    for solver in a.solvers.split(","):
        for k in (int(v) for v in a.k.split(",")):
            cmd = [sys.executable, __file__, "--raw", a.raw, "--shape", a.shape, "--seed", str(a.seed),
                   "--one", solver, str(k)]
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
            except subprocess.TimeoutExpired:
                print(f"{solver:<16} {k:>6} {'>' + str(int(a.timeout)):>9} (did not finish)", flush=True)
                continue
            if out.returncode != 0:
                print(f"{solver:<16} {k:>6} failed: {out.stderr.strip().splitlines()[-1:]}", flush=True)
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{solver:<16} {k:>6} {r['time_s']:>9.2f} {r['mse']:>12.6e} {r['peak_bytes'] / 1e6:>10.0f}"
                  f" {r['peak_bytes'] / (n * d * 4):>8.2f}", flush=True)


if __name__ == "__main__":
    main()
