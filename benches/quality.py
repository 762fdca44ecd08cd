#!/usr/bin/env python3
"""Scoring quality of `leadrouter train` beside scikit-learn, on fixed splits (issue 17).

Writes each data set's stratified 80/20 split (scikit-learn's train_test_split, test_size 0.2,
random_state 42; bank-additional without `duration`, which leaks the label) as CSV to --out,
trains `leadrouter train` on the 80 % file, scores the 20 % file with `leadrouter evaluate`,
and fits scikit-learn's references on the same two files:

  plain     one-hot + standardise + median impute, LogisticRegression(C=1)
  bins      plain plus KBinsDiscretizer(10, quantile, one-hot) next to each numeric column
  splines   plain plus SplineTransformer(5 knots, degree 3) next to each numeric column
  boosting  HistGradientBoostingClassifier (not explainable per attribute; the ceiling)

Prints a Markdown table of test AUC and Brier. Needs pandas and scikit-learn.

Usage: python3 benches/quality.py [--bin target/release/leadrouter] [--out /tmp/quality]
       [--train-args "--refit"] [--no-sklearn] [--no-boosting]
"""
import argparse
import warnings
import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETS = [
    # name, file, label, positive, columns to drop
    ("bank-additional", "data/bank-marketing/bank-additional-full.csv.gz", "y", "yes",
     ["duration"]),
    ("online-shoppers", "data/online-shoppers/online_shoppers_intention.csv.gz", "Revenue",
     "TRUE", []),
]


def split(name, path, label, drop, out):
    """Writes NAME-train.csv and NAME-test.csv; answers their paths."""
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(os.path.join(ROOT, path), sep=None, engine="python", dtype=str)
    df = df.drop(columns=drop)
    train, test = train_test_split(df, test_size=0.2, stratify=df[label], random_state=42)
    paths = []
    for part, frame in (("train", train), ("test", test)):
        p = os.path.join(out, f"{name}-{part}.csv")
        frame.to_csv(p, index=False)
        paths.append(p)
    return paths


def leadrouter(binary, train_csv, test_csv, label, positive, extra, out):
    model = os.path.join(out, os.path.basename(train_csv).replace("-train.csv", ".json"))
    cmd = [binary, "train", "--data", train_csv, "--label", label, "--positive", positive,
           "--out", model] + extra
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{run.stderr}")
    sys.stderr.write(run.stderr)
    ev = subprocess.run([binary, "evaluate", "--model", model, "--data", test_csv, "--label",
                         label, "--positive", positive], capture_output=True, text=True)
    if ev.returncode != 0:
        sys.exit(f"evaluate failed:\n{ev.stderr}")
    m = json.loads(ev.stdout)
    return m["auc"], m["brier"]


def sklearn_scores(train_csv, test_csv, label, positive, boosting):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import brier_score_loss, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import (KBinsDiscretizer, OneHotEncoder, SplineTransformer,
                                       StandardScaler)

    def load(p):
        df = pd.read_csv(p)
        y = df.pop(label).astype(str).str.lower() == positive.lower()
        return df, y.to_numpy()

    xtr, ytr = load(train_csv)
    xte, yte = load(test_csv)
    num = [c for c in xtr.columns if pd.api.types.is_numeric_dtype(xtr[c])]
    cat = [c for c in xtr.columns if c not in num]
    for c in cat:
        xtr[c] = xtr[c].astype(str)
        xte[c] = xte[c].astype(str)
    onehot = OneHotEncoder(handle_unknown="ignore")
    linear = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())

    def extra(step):
        return make_pipeline(SimpleImputer(strategy="median"), step)

    designs = {
        "plain": [],
        "bins": [("bins", extra(KBinsDiscretizer(10, encode="onehot", strategy="quantile",
                                                 quantile_method="averaged_inverted_cdf")),
                  num)],
        "splines": [("splines", extra(SplineTransformer(n_knots=5, degree=3)), num)],
    }
    out = {}
    for name, more in designs.items():
        ct = ColumnTransformer([("num", linear, num), ("cat", onehot, cat)] + more)
        model = make_pipeline(ct, LogisticRegression(C=1.0, max_iter=5000))
        p = model.fit(xtr, ytr).predict_proba(xte)[:, 1]
        out[name] = (roc_auc_score(yte, p), brier_score_loss(yte, p))
    if boosting:
        ct = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), cat)],
                               remainder="passthrough", sparse_threshold=0)
        model = make_pipeline(ct, HistGradientBoostingClassifier(random_state=42))
        p = model.fit(xtr, ytr).predict_proba(xte)[:, 1]
        out["boosting"] = (roc_auc_score(yte, p), brier_score_loss(yte, p))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/leadrouter"))
    ap.add_argument("--out", default="/tmp/quality")
    ap.add_argument("--train-args", default="", help="extra `leadrouter train` flags")
    ap.add_argument("--no-sklearn", action="store_true")
    ap.add_argument("--no-boosting", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    extra = shlex.split(a.train_args)
    print("| data set | model | test AUC | test Brier |")
    print("|---|---|---|---|")
    for name, path, label, positive, drop in SETS:
        train_csv, test_csv = split(name, path, label, drop, a.out)
        rows = {}
        if not a.no_sklearn:
            for k, v in sklearn_scores(train_csv, test_csv, label, positive,
                                       not a.no_boosting).items():
                rows[f"scikit-learn {k}"] = v
        flags = " ".join(extra) or "defaults"
        rows[f"leadrouter train ({flags})"] = leadrouter(a.bin, train_csv, test_csv, label,
                                                         positive, extra, a.out)
        for model, (auc, brier) in rows.items():
            print(f"| {name} | {model} | {auc:.4f} | {brier:.4f} |", flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    warnings.filterwarnings("ignore")
    main()
