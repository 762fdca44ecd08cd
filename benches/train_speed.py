#!/usr/bin/env python3
"""Training speed, side by side in one run: leadrouter's Newton solver (and optionally linfa)
against scikit-learn's lbfgs on one thread, same data, same split, same objective (L2, C=1).

Usage: python3 benches/train_speed.py [--rows 200000] [--features 40] [--linfa] [--bin PATH]
Needs: numpy, scikit-learn, threadpoolctl (pip install scikit-learn). Prints a Markdown table.
"""
import argparse
import os
import re
import subprocess
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

MASK = (1 << 64) - 1


class SplitMix64:
    """The same PRNG as src/training/split.rs, so both tools see the same holdout."""

    def __init__(self, seed):
        self.s = seed & MASK

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n):
        zone = MASK - (MASK % n)
        while True:
            x = self.next()
            if x < zone:
                return x % n


def stratified(y, frac, seed):
    rng = SplitMix64(seed)
    train, hold = [], []
    for cls in (False, True):
        idx = [i for i in range(len(y)) if bool(y[i]) == cls]
        for i in range(len(idx) - 1, 0, -1):
            j = rng.below(i + 1)
            idx[i], idx[j] = idx[j], idx[i]
        n_hold = int(len(idx) * frac + 0.5)
        hold += idx[:n_hold]
        train += idx[n_hold:]
    return np.array(sorted(train)), np.array(sorted(hold))


def make_data(rows, features, seed=7):
    """Correlated Gaussian features, a logistic truth, ~12 % positives, AUC near 0.81."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(features, features)) / np.sqrt(features)
    x = rng.normal(size=(rows, features)) @ (np.eye(features) + 0.5 * mix)
    w = rng.normal(scale=0.18, size=features)
    y = rng.random(rows) < 1 / (1 + np.exp(-(x @ w - 2.3)))
    return x, y


def run_ours(binary, path, solver):
    """Returns (fit seconds, holdout AUC, whole-command seconds, peak RSS MiB)."""
    t0 = time.perf_counter()
    out = subprocess.run(
        ["/usr/bin/time", "-v", binary, "train", "--data", path, "--label", "y",
         "--solver", solver, "--out", path + f".{solver}.json"],
        capture_output=True, text=True, check=True,
    ).stderr
    wall = time.perf_counter() - t0
    fit = float(re.search(r"fit ([0-9.]+) s", out).group(1))
    auc = float(re.search(r"holdout AUC ([0-9.]+)", out).group(1))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out).group(1)) / 1024
    return fit, auc, wall, rss


def run_sklearn(path):
    """The pandas + scikit-learn script as a whole process: (seconds, peak RSS MiB, AUC)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_sklearn.py")
    t0 = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-v", "python3", script, path],
                         capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) / 1024
    auc = float(re.search(r"holdout AUC ([0-9.]+)", out.stdout).group(1))
    return wall, rss, auc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--features", type=int, default=40)
    ap.add_argument("--linfa", action="store_true", help="also time the linfa reference")
    ap.add_argument("--bin", default="target/release/leadrouter")
    ap.add_argument("--repeat", type=int, default=3, help="whole-process runs of each")
    a = ap.parse_args()

    x, y = make_data(a.rows, a.features)
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "synthetic.csv")
    header = ",".join([f"f{j}" for j in range(a.features)] + ["y"])
    np.savetxt(path, np.column_stack([x, y.astype(int)]), delimiter=",",
               header=header, comments="", fmt=["%.6f"] * a.features + ["%d"])
    # Read back what was written, so both tools fit the same rounded values.
    x = np.loadtxt(path, delimiter=",", skiprows=1)[:, :-1]

    train, hold = stratified(y, 0.2, 42)
    scaler = StandardScaler().fit(x[train])
    xt, xh = scaler.transform(x[train]), scaler.transform(x[hold])
    with threadpool_limits(limits=1):
        t0 = time.perf_counter()
        model = LogisticRegression(C=1.0, max_iter=1000).fit(xt, y[train])
        sk_fit = time.perf_counter() - t0
    sk_auc = roc_auc_score(y[hold], model.predict_proba(xh)[:, 1])

    ours_fit, ours_auc, wall, rss = run_ours(a.bin, path, "newton")
    n_train = len(train)
    print(f"data: {a.rows} rows x {a.features} features, {y.mean():.1%} positives, "
          f"train {n_train} / holdout {len(hold)} rows (seed 42)")
    print("| solver | fit s | ratio to sklearn | holdout AUC |")
    print("|---|---|---|---|")
    print(f"| scikit-learn lbfgs, 1 thread | {sk_fit:.3f} | 1.00 | {sk_auc:.4f} |")
    print(f"| leadrouter newton | {ours_fit:.3f} | {ours_fit / sk_fit:.2f} | {ours_auc:.4f} |")
    if a.linfa:
        lf_fit, lf_auc, _, _ = run_ours(a.bin, path, "linfa")
        print(f"| linfa-logistic 0.8.1 | {lf_fit:.3f} | {lf_fit / sk_fit:.2f} | {lf_auc:.4f} |")
    print(f"leadrouter train, whole command (CSV parse + fit + holdout): {wall:.1f} s, "
          f"{a.rows / wall:,.0f} rows/s; fit alone {n_train / ours_fit:,.0f} rows/s; "
          f"peak RSS {rss:,.0f} MiB")
    # Whole processes side by side, alternating, best of `--repeat` each.
    ours_runs, theirs_runs = [], []
    for _ in range(a.repeat):
        ours_runs.append(run_ours(a.bin, path, "newton")[2:])
        theirs_runs.append(run_sklearn(path))
    o_wall, o_rss = min(r[0] for r in ours_runs), max(r[1] for r in ours_runs)
    t_wall, t_rss, t_auc = min(r[0] for r in theirs_runs), max(r[1] for r in theirs_runs), theirs_runs[0][2]
    print("| whole process | wall s (best of %d) | ratio | rows/s | peak RSS MiB |" % a.repeat)
    print("|---|---|---|---|---|")
    print(f"| pandas + scikit-learn (benches/train_sklearn.py, AUC {t_auc:.4f}) | {t_wall:.2f} | 1.00 "
          f"| {a.rows / t_wall:,.0f} | {t_rss:,.0f} |")
    print(f"| leadrouter train | {o_wall:.2f} | {o_wall / t_wall:.2f} | {a.rows / o_wall:,.0f} "
          f"| {o_rss:,.0f} |")


if __name__ == "__main__":
    main()
