#!/usr/bin/env python3
"""The pandas + scikit-learn counterpart of `leadrouter train`, as one whole process: read the
CSV, one-hot the text columns and standardise the numbers, fit lbfgs on one thread (C=1), and
score the holdout (the same seeded split as ours). benches/train_speed.py times it beside ours.

Usage: python3 benches/train_sklearn.py PATH [--label y]
"""
import argparse
import os
import sys

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_speed import stratified  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--label", default="y")
    a = ap.parse_args()
    df = pd.read_csv(a.path, sep=None if a.path.endswith(".gz") else ",", engine="c")
    y = df.pop(a.label).astype(str).str.lower().isin(["1", "yes", "true"]).to_numpy()
    text = [c for c in df.columns if df[c].dtype == object]
    x = pd.get_dummies(df, columns=text, dtype=float).to_numpy(dtype=float)
    train, hold = stratified(y, 0.2, 42)
    scaler = StandardScaler().fit(x[train])
    with threadpool_limits(limits=1):
        model = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(x[train]), y[train])
    auc = roc_auc_score(y[hold], model.predict_proba(scaler.transform(x[hold]))[:, 1])
    print(f"holdout AUC {auc:.4f}")


if __name__ == "__main__":
    main()
