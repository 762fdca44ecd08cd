#!/usr/bin/env python3
"""Per-request server CPU, split by where it goes, for ScoreLead and SubmitLead (steady state:
a closer keeps the pool at ~85 %, so each SubmitLead also costs one CloseAssignment) on the
memory store, at c16. Runs a release server, drives it with `leadrouter bench`, reads the
server's CPU time from /proc and samples it with perf (no call graphs: each sample is charged
to the function it landed in, grouped below).

Usage: cargo build --release && python3 benches/breakdown.py [--seconds 6]
Needs perf. Prints Markdown.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import load  # noqa: E402

# First match wins; patterns are searched in "dso symbol".
GROUPS = [
    ("kernel (sockets, scheduling, page faults)", r"\[kernel|^\S*vmlinux|\[k\]"),
    ("malloc / free / memcpy", r"mi_|_mi_|malloc|free|memmove|memcpy|memset|memcmp|realloc"),
    ("logging and spans (tracing, JSON)", r"tracing|serde_json|fmt::|format_|flt2dec|Write"),
    ("metrics", r"metrics"),
    ("protobuf decode / encode", r"prost|from_utf8|encoded_len"),
    ("store (memory: claim, queue, ledger, events)", r"store::|ledger|State::"),
    ("routing (rank, choose, records)", r"routing::|rep::|calendar"),
    ("scoring, explanation, drift, segments", r"features|model::|drift|segment|Lead::"),
    ("engine, grpc handlers, convert", r"leadrouter::"),
    ("h2 / hyper / tonic / tokio / tower", r"h2::|hyper|tonic|tokio|tower|http|bytes|mio|futures"),
]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profile(mode, keep, a):
    srv, url, admin, _ = load.start_server({"LEADROUTER__REPS__FILE":
                                            os.path.abspath(load.bench_team())})
    try:
        args = [load.BIN, "bench", "--server", url, "--mode", mode, "--connections", "16",
                "--concurrency", "1", "--warmup", "1", "--duration", str(a.seconds + 2),
                "--keep-open", str(keep)]
        b = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        c0 = cpu_seconds(srv.pid)
        subprocess.run(["perf", "record", "-F", "1999", "-o", f"/tmp/breakdown.{mode}",
                        "-p", str(srv.pid), "--", "sleep", str(a.seconds)], capture_output=True)
        c1 = cpu_seconds(srv.pid)
        report = json.loads(b.communicate()[0])
    finally:
        srv.terminate()
        srv.wait()
    per_req_us = (c1 - c0) / (report["rps"] * a.seconds) * 1e6
    out = subprocess.run(["perf", "report", "-i", f"/tmp/breakdown.{mode}", "--no-children",
                          "--sort", "dso,symbol", "--stdio"], capture_output=True, text=True).stdout
    shares = {g: 0.0 for g, _ in GROUPS}
    shares["other"] = 0.0
    for line in out.splitlines():
        m = re.match(r"\s+([0-9.]+)%\s+(.*)", line)
        if not m:
            continue
        pct, rest = float(m.group(1)), m.group(2)
        for g, pat in GROUPS:
            if re.search(pat, rest):
                shares[g] += pct
                break
        else:
            shares["other"] += pct
    return report["rps"], per_req_us, shares


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=6)
    a = ap.parse_args()
    score = profile("score", 0, a)
    submit = profile("submit", 380, a)
    print(f"c16, memory store, perf -F 1999 for {a.seconds:g} s; server CPU per request from "
          "/proc (utime+stime), split by perf's samples")
    print("| | ScoreLead | SubmitLead steady (+ its close) |")
    print("|---|---|---|")
    print(f"| rps | {score[0]:,.0f} | {submit[0]:,.0f} |")
    print(f"| server CPU per request | {score[1]:.0f} µs | {submit[1]:.0f} µs |")
    for g in list(score[2]):
        print(f"| {g} | {score[2][g] * score[1] / 100:.1f} µs ({score[2][g]:.0f} %) | "
              f"{submit[2][g] * submit[1] / 100:.1f} µs ({submit[2][g]:.0f} %) |")


if __name__ == "__main__":
    main()
