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
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
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
    """Starts a server; returns (process, url, ms from exec to its "serving" log line, which
    it writes just after health turns SERVING)."""
    port = free_port()
    env = dict(os.environ, LEADROUTER__SERVER__ADDR=f"127.0.0.1:{port}",
               LEADROUTER__LOG__FORMAT="json", LEADROUTER__LOG__FILTER="info", **env_extra)
    t0 = time.perf_counter()
    p = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if "leadrouter serving" in line:
            ready_ms = (time.perf_counter() - t0) * 1000
            # Keep draining the pipe so the server never blocks on it.
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, f"http://127.0.0.1:{port}", ready_ms
    raise RuntimeError("server did not start")


def rss_mib(p, field):
    """VmRSS (now) or VmHWM (peak) of a process, in MiB."""
    with open(f"/proc/{p.pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


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


def h2load_check(url, a):
    """ScoreLead through h2load and through `leadrouter bench` at the same concurrency."""
    body = os.path.join(tempfile.mkdtemp(), "score.bin")
    subprocess.run([BIN, "bench", "--write-body", body], check=True)
    path = f"{url}/leadrouter.v1.LeadService/ScoreLead"
    hdr = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    # h2load counts HTTP 200s, and a broken body still gets 200: check this one once.
    v = subprocess.run(["curl", "-sv", "--http2-prior-knowledge", *hdr, "--data-binary",
                        f"@{body}", "-o", "/dev/null", path], capture_output=True, text=True)
    status = [l for l in v.stderr.splitlines() if "grpc-status" in l]
    assert status and status[-1].strip().endswith("grpc-status: 0"), v.stderr
    health_body = os.path.join(os.path.dirname(body), "health.bin")
    with open(health_body, "wb") as f:
        f.write(b"\x00\x00\x00\x00\x00")  # an empty HealthCheckRequest, framed

    def h2(conns, inflight, target, data):
        h = subprocess.run(["h2load", "-c", str(conns), "-m", str(inflight), "-D",
                            str(int(a.duration)), "--warm-up-time", str(int(a.warmup)),
                            "-d", data, *hdr, f"{url}/{target}"],
                           capture_output=True, text=True, check=True).stdout
        rps = float(re.search(r"finished in [0-9.]+m?s, ([0-9.]+) req/s", h).group(1))
        ok = int(re.search(r"status codes: (\d+) 2xx", h).group(1))
        return rps, ok

    out = []
    for name, conns, inflight in [("c16", 16, 1), ("c4m16", 4, 16)]:
        ceiling, _ = h2(conns, inflight, "grpc.health.v1.Health/Check", health_body)
        rps, ok = h2(conns, inflight, "leadrouter.v1.LeadService/ScoreLead", body)
        ours = median_run(url, "score", conns, inflight, a)["rps"]
        out.append((name, ceiling, rps, ours, ok))
    return status[-1].strip(), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--h2load", action="store_true", help="cross-check ScoreLead with h2load")
    a = ap.parse_args()
    rows = []
    ready = []
    for _ in range(a.runs):
        srv, url, ms = start_server({})
        ready.append(ms)
        srv.terminate()
        srv.wait()
    # The memory store is bounded (store.memory_max_leads); every rep is full after ~1,000
    # leads here, so the SubmitLead and stream runs queue ~10^6 leads: lift the limit, or the
    # later runs would measure RESOURCE_EXHAUSTED answers.
    srv, url, _ = start_server({"LEADROUTER__STORE__MEMORY_MAX_LEADS": "100000000"})
    time.sleep(0.5)
    idle_rss = rss_mib(srv, "VmRSS")
    peak_c64 = None
    try:
        for name, conns, inflight in CONFIGS:
            ceiling = median_run(url, "health", conns, inflight, a)
            rows.append((name, "health (ceiling)", ceiling, ceiling))
            for mode in ("score", "submit", "stream"):
                rows.append((name, f"{mode} (memory)",
                             median_run(url, mode, conns, inflight, a), ceiling))
            if name == "c64":
                peak_c64 = rss_mib(srv, "VmHWM")
        h2 = h2load_check(url, a) if a.h2load else None
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
        srv, url, _ = start_server({"LEADROUTER__STORE__URL": f"redis+unix://{sock}"})
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
    print(f"exec -> health SERVING (shipped model), median of {a.runs}: "
          f"{statistics.median(ready):.0f} ms; RSS idle {idle_rss:.1f} MiB, "
          f"peak after the c1/c16/c64 loads (memory store) {peak_c64:.1f} MiB")
    if h2:
        print(f"h2load cross-check (body verified once with curl: {h2[0]}):")
        print("| load | h2load health rps | h2load ScoreLead rps | ScoreLead / health | "
              "leadrouter bench ScoreLead rps | bench / h2load | h2load 2xx |")
        print("|---|---|---|---|---|---|---|")
        for name, ceiling, rps, ours, ok in h2[1]:
            print(f"| {name} | {ceiling:,.0f} | {rps:,.0f} | {rps / ceiling:.2f} | {ours:,.0f} | "
                  f"{ours / rps:.2f} | {ok} |")
    print(f"median of {a.runs} runs, {a.duration:g} s each after {a.warmup:g} s warm-up; "
          f"{os.cpu_count()} cores shared by server, load and Redis")
    print("| load | method | rps | ratio to ceiling | p50 us | p99 us | p99.9 us | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for name, label, r, c in rows:
        print(f"| {name} | {label} | {r['rps']:,.0f} | {r['rps'] / c['rps']:.2f} | "
              f"{r['p50_us']} | {r['p99_us']} | {r['p999_us']} | {r['errors']} |")


if __name__ == "__main__":
    main()
