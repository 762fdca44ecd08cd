#!/usr/bin/env python3
"""What the console's decision records cost SubmitLead (issue 18).

Two servers in one run on the same bench team: one keeps no decision records
(`admin.console_decisions = 0`), the other keeps the default 2,000 (or $CONSOLE_B; 1 isolates
the copy a response makes from the records' memory). Runs alternate between them so machine
noise hits both alike. For each: steady SubmitLead rps at c4m16 (a closer keeps 85 % of the
pool open) and the server's CPU time per submitted lead (its close included), read from
/proc around each run: CPU per lead is steadier than rps on a shared machine.

    cargo build --release && python3 benches/console_cost.py [--runs 7] [--duration 4]
"""
import argparse
import os
import statistics

from load import bench_team, start_server, bench, keep_open, metric, rss_mib

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(p):
    with open(f"/proc/{p.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--duration", type=float, default=4)
    ap.add_argument("--utilisation", type=float, default=0.85)
    a = ap.parse_args()
    a.warmup = 0  # every request of a run is counted, so CPU per lead is exact
    team = {"LEADROUTER__REPS__FILE": bench_team()}
    b = int(os.environ.get("CONSOLE_B", "2000"))
    # Keyed by (position, records): an A/A run ($CONSOLE_B=0) checks the harness itself.
    servers = {(i, n): start_server(dict(team, LEADROUTER__ADMIN__CONSOLE_DECISIONS=str(n)))
               for i, n in enumerate((0, b))}
    first = (0, 0)
    rps = {n: [] for n in servers}
    cpu = {n: [] for n in servers}
    try:
        capacity = metric(servers[first][2], "leadrouter_pool_capacity")
        k = keep_open(capacity, a, 4, 16, "submit")
        for run in range(a.runs):
            # Alternate which server goes first, so neither always follows the other.
            for n in sorted(servers, reverse=run % 2 == 1):
                p, url = servers[n][0], servers[n][1]
                before = cpu_s(p)
                r = bench(url, "submit", 4, 16, a, k)
                cpu[n].append((cpu_s(p) - before) / max(1, r["requests"]) * 1e6)
                rps[n].append(r["rps"])
        base_rps, base_cpu = statistics.median(rps[first]), statistics.median(cpu[first])
        print(f"| console_decisions | SubmitLead steady c4m16 rps (median of {a.runs}) | ratio "
              "| server CPU µs per lead | ratio | RSS MiB |")
        print("|---|---|---|---|---|---|")
        for n in servers:
            r, c = statistics.median(rps[n]), statistics.median(cpu[n])
            print(f"| {n[1]} | {r:.0f} | {r / base_rps:.3f} | {c:.1f} | {c / base_cpu:.3f} "
                  f"| {rss_mib(servers[n][0], 'VmRSS'):.0f} |")
    finally:
        for p, *_ in servers.values():
            p.terminate()
            p.wait()


if __name__ == "__main__":
    main()
