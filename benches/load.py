#!/usr/bin/env python3
"""Same-run ratio table for `leadrouter bench`. Starts a release server (shipped model, the
example team without daily quotas, memory store; then a Redis store on a private
redis-server) and the same-bytes ceiling (benches/ceiling.rs: a bare tonic LeadService that
answers the real server's captured responses), drives each method at c1, c16 and c4m16
(4 connections x 16 in flight), takes the median of --runs runs and prints every throughput
as a ratio to its own ceiling and to grpc.health on the same server, in the same run.

Steady state: a closer (`bench --keep-open`) closes the oldest submitted leads so the
default pool sits at --utilisation of its capacity (sampled from /metrics during the run).
Saturated: nobody closes; every rep fills and the rest queue (run last, they fill the store).

Usage: cargo build --release --bin leadrouter --example ceiling
       python3 benches/load.py [--runs 3] [--duration 5] [--h2load]
Needs redis-server on PATH for the Redis rows, h2load for --h2load. Prints Markdown.
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
import urllib.request

BIN = "target/release/leadrouter"
CEILING = "target/release/examples/ceiling"
CONFIGS = [("c1", 1, 1), ("c16", 16, 1), ("c4m16", 4, 16)]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def bench_team():
    """The example team without daily quotas: a steady-state run assigns thousands of leads
    a second, and 40 a day per rep would put everyone over quota within a second."""
    with open("deploy/reps.example.toml") as f:
        text = "".join(l for l in f if not l.startswith("daily_quota"))
    path = os.path.join(tempfile.mkdtemp(), "bench-team.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def start_server(env_extra):
    """Starts a server; returns (process, grpc url, admin url, ms from exec to its "serving"
    log line, written just after health turns SERVING)."""
    port, admin = free_port(), free_port()
    env = dict(os.environ, LEADROUTER__SERVER__ADDR=f"127.0.0.1:{port}",
               LEADROUTER__ADMIN__ADDR=f"127.0.0.1:{admin}",
               LEADROUTER__LOG__FORMAT="json", LEADROUTER__LOG__FILTER="info",
               LEADROUTER__LOG__REQUESTS="false", **env_extra)
    t0 = time.perf_counter()
    p = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if "leadrouter serving" in line:
            ready_ms = (time.perf_counter() - t0) * 1000
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}", ready_ms
    raise RuntimeError("server did not start")


def start_ceiling(url):
    p = subprocess.Popen([CEILING, "--from", url], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    m = re.search(r"listening on (\S+)", line)
    if not m:
        raise RuntimeError(f"ceiling did not start: {p.stderr.read()}")
    captured = p.stderr.readline().strip()
    return p, f"http://{m.group(1)}", captured


def rss_mib(p, field):
    """VmRSS (now) or VmHWM (peak) of a process, in MiB."""
    with open(f"/proc/{p.pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def metric(admin, name, pool="default"):
    text = urllib.request.urlopen(f"{admin}/metrics", timeout=5).read().decode()
    m = re.search(rf'^{name}\{{pool="{pool}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else float("nan")


class Sampler:
    """Samples the default pool's load / capacity every 0.25 s while a run goes on."""

    def __init__(self, admin):
        self.admin, self.samples, self.stop = admin, [], threading.Event()
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        while not self.stop.wait(0.25):
            try:
                cap = metric(self.admin, "leadrouter_pool_capacity")
                self.samples.append(metric(self.admin, "leadrouter_pool_load") / cap)
            except Exception:
                pass

    def finish(self):
        self.stop.set()
        self.t.join()
        return statistics.median(self.samples) if self.samples else float("nan")


def window(conns, inflight, steady):
    """Leads outstanding per stream: 64, or in steady state at most 256 in all, so what is in
    flight fits the pool (475 seats) beside the leads kept open."""
    return max(1, min(64, 256 // (conns * inflight))) if steady else 64


def keep_open(capacity, a, conns, inflight, mode):
    """Leads the closer leaves open: the target utilisation, less half of what is in flight
    (those take seats as they land)."""
    flight = conns * inflight * (window(conns, inflight, True) if mode == "stream" else 1)
    return max(1, int(capacity * a.utilisation) - flight // 2)


def bench(server, mode, conns, inflight, a, keep_open=0):
    out = subprocess.run(
        [BIN, "bench", "--server", server, "--mode", mode, "--connections", str(conns),
         "--concurrency", str(inflight), "--warmup", str(a.warmup),
         "--duration", str(a.duration), "--keep-open", str(keep_open),
         "--window", str(window(conns, inflight, keep_open > 0))],
        capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def median_run(server, mode, conns, inflight, a, keep_open=0, admin=None):
    runs = []
    for _ in range(a.runs):
        sampler = Sampler(admin) if admin else None
        r = bench(server, mode, conns, inflight, a, keep_open)
        r["utilisation"] = sampler.finish() if sampler else None
        runs.append(r)
    runs.sort(key=lambda r: r["rps"])
    return runs[len(runs) // 2]


def h2load_check(url, ours, a):
    """ScoreLead through h2load beside `leadrouter bench` at the same concurrency: is our
    generator within 10 % of a C client?"""
    body = os.path.join(tempfile.mkdtemp(), "score.bin")
    subprocess.run([BIN, "bench", "--write-body", body], check=True)
    hdr = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    out = []
    for name, conns, inflight in [("c16", 16, 1), ("c4m16", 4, 16)]:
        rps = []
        for _ in range(a.runs):
            h = subprocess.run(["h2load", "-c", str(conns), "-m", str(inflight), "-D",
                                str(int(a.duration)), "--warm-up-time", str(int(a.warmup)),
                                "-d", body, *hdr, f"{url}/leadrouter.v1.LeadService/ScoreLead"],
                               capture_output=True, text=True, check=True).stdout
            rps.append(float(re.search(r"finished in [0-9.]+m?s, ([0-9.]+) req/s", h).group(1)))
        out.append((name, statistics.median(rps), ours[name]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--utilisation", type=float, default=0.85)
    ap.add_argument("--h2load", action="store_true", help="cross-check ScoreLead with h2load")
    ap.add_argument("--no-redis", action="store_true")
    a = ap.parse_args()
    team = {"LEADROUTER__REPS__FILE": os.path.abspath(bench_team())}
    rows, notes = [], []
    srv, url, admin, _ = start_server(team)
    ceil, curl, captured = start_ceiling(url)
    notes.append(f"ceiling {captured}")
    capacity = metric(admin, "leadrouter_pool_capacity")
    notes.append(f"default pool capacity {capacity:.0f}; the closer aims at {a.utilisation:.0%}")
    score_rps = {}
    try:
        for name, conns, inflight in CONFIGS:
            health = median_run(url, "health", conns, inflight, a)
            rows.append((name, "health", health, None, health))
            for mode, label, steady in [("score", "ScoreLead", False),
                                        ("submit", "SubmitLead steady", True),
                                        ("stream", "SubmitLeads stream steady", True)]:
                k = keep_open(capacity, a, conns, inflight, mode) if steady else 0
                c = median_run(curl, mode, conns, inflight, a, k)
                r = median_run(url, mode, conns, inflight, a, k, admin if k else None)
                rows.append((name, f"{label} (memory)", r, c, health))
                if mode == "score":
                    score_rps[name] = r["rps"]
        for name, conns, inflight in CONFIGS:
            for mode, label in [("submit", "SubmitLead saturated"),
                                ("stream", "SubmitLeads stream saturated")]:
                r = median_run(url, mode, conns, inflight, a)
                rows.append((name, f"{label} (memory)", r, None, None))
        peak = rss_mib(srv, "VmHWM")
        notes.append(f"memory store: peak RSS after the whole table {peak:.0f} MiB "
                     f"(store.memory_max_leads at its default)")
        h2 = h2load_check(url, score_rps, a) if a.h2load else None
    finally:
        for p in (ceil, srv):
            p.terminate()
            p.wait()
    if shutil.which("redis-server") and not a.no_redis:
        d = tempfile.mkdtemp()
        sock = os.path.join(d, "redis.sock")
        redis = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", sock,
                                  "--save", "", "--appendonly", "no", "--dir", d],
                                 stdout=subprocess.DEVNULL)
        time.sleep(0.3)
        srv, url, admin, _ = start_server(dict(team, LEADROUTER__STORE__URL=f"redis+unix://{sock}"))
        try:
            for name, conns, inflight in CONFIGS:
                score = median_run(url, "score", conns, inflight, a)
                rows.append((name, "ScoreLead (Redis run)", score, None, None))
                k = keep_open(capacity, a, conns, inflight, "submit")
                r = median_run(url, "submit", conns, inflight, a, k, admin)
                rows.append((name, "SubmitLead steady (Redis)", r, None, score))
        finally:
            srv.terminate()
            srv.wait()
            redis.terminate()
    for n in notes:
        print(n)
    if h2:
        print("| load | h2load ScoreLead rps | leadrouter bench ScoreLead rps | bench / h2load |")
        print("|---|---|---|---|")
        for name, theirs, ours in h2:
            print(f"| {name} | {theirs:,.0f} | {ours:,.0f} | {ours / theirs:.2f} |")
    print(f"median of {a.runs} runs, {a.duration:g} s each after {a.warmup:g} s warm-up; "
          f"{os.cpu_count()} cores shared by server, load and Redis")
    print("| load | method | rps | / its ceiling | / health (or ScoreLead) | utilisation | "
          "p50 us | p99 us | errors | closes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, label, r, c, base in rows:
        ratio = lambda x: f"{r['rps'] / x['rps']:.2f} ({x['rps']:,.0f})" if x else ""
        u = f"{r['utilisation']:.2f}" if r.get("utilisation") is not None else ""
        print(f"| {name} | {label} | {r['rps']:,.0f} | {ratio(c)} | {ratio(base)} | {u} | "
              f"{r['p50_us']} | {r['p99_us']} | {r['errors']} | {r['closes']} |")


if __name__ == "__main__":
    main()
