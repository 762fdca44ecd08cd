#!/usr/bin/env python3
"""Same-run ratio table for `leadrouter bench`: starts a release server (memory store, then a
Redis store on a private redis-server), drives each method at c1, c16, c64 and 4 connections x
16 in flight, takes the median of --runs runs, and prints every throughput as a ratio to the
grpc.health ceiling measured in the same run.

Usage: cargo build --release && python3 benches/load.py [--runs 3] [--duration 5]
Needs redis-server on PATH for the Redis row. Prints Markdown.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

BIN = "target/release/leadrouter"
CONFIGS = [("c1", 1, 1), ("c16", 16, 1), ("c64", 64, 1), ("c4m16", 4, 16)]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_server(env_extra):
    port = free_port()
    env = dict(os.environ, LEADROUTER__SERVER__ADDR=f"127.0.0.1:{port}",
               LEADROUTER__LOG__FILTER="warn", **env_extra)
    p = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return p, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def bench(server, mode, conns, inflight, a):
    out = subprocess.run(
        [BIN, "bench", "--server", server, "--mode", mode, "--connections", str(conns),
         "--concurrency", str(inflight), "--warmup", str(a.warmup),
         "--duration", str(a.duration)],
        capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def median_run(server, mode, conns, inflight, a):
    runs = [bench(server, mode, conns, inflight, a) for _ in range(a.runs)]
    runs.sort(key=lambda r: r["rps"])
    return runs[len(runs) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=1)
    a = ap.parse_args()
    rows = []
    srv, url = start_server({})
    try:
        for name, conns, inflight in CONFIGS:
            ceiling = median_run(url, "health", conns, inflight, a)
            rows.append((name, "health (ceiling)", ceiling, ceiling))
            for mode in ("score", "submit", "stream"):
                rows.append((name, f"{mode} (memory)",
                             median_run(url, mode, conns, inflight, a), ceiling))
    finally:
        srv.terminate()
        srv.wait()
    if shutil.which("redis-server"):
        d = tempfile.mkdtemp()
        sock = os.path.join(d, "redis.sock")
        redis = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock,
                                  "--save", "", "--appendonly", "no", "--dir", d],
                                 stdout=subprocess.DEVNULL)
        time.sleep(0.3)
        srv, url = start_server({"LEADROUTER__STORE__URL": f"redis+unix://{sock}"})
        try:
            for name, conns, inflight in CONFIGS:
                ceiling = median_run(url, "health", conns, inflight, a)
                rows.append((name, "health (ceiling, redis run)", ceiling, ceiling))
                rows.append((name, "submit (redis)",
                             median_run(url, "submit", conns, inflight, a), ceiling))
        finally:
            srv.terminate()
            srv.wait()
            redis.terminate()
    print(f"median of {a.runs} runs, {a.duration:g} s each after {a.warmup:g} s warm-up; "
          f"{os.cpu_count()} cores shared by server, load and Redis")
    print("| load | method | rps | ratio to ceiling | p50 us | p99 us | p99.9 us | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for name, label, r, c in rows:
        print(f"| {name} | {label} | {r['rps']:,.0f} | {r['rps'] / c['rps']:.2f} | "
              f"{r['p50_us']} | {r['p99_us']} | {r['p999_us']} | {r['errors']} |")


if __name__ == "__main__":
    main()
