#!/usr/bin/env bash
# Claims per second of claim.lua on one Redis core, driven directly by redis-benchmark with
# EVALSHA, 20 candidate reps and a representative lead context; beside it, in the same run, a
# trivial EVALSHA (the ceiling for a script round trip) and PING.
#   usage: benches/redis_claim.sh [requests] [clients]     (prints a Markdown table)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
C=${2:-50}
dir=$(mktemp -d)
sock="$dir/redis.sock"
redis-server --port 0 --unixsocket "$sock" --dir "$dir" --save "" --appendonly no --daemonize yes \
  --logfile "$dir/redis.log" >/dev/null
trap 'redis-cli -s "$sock" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
for _ in $(seq 50); do redis-cli -s "$sock" ping >/dev/null 2>&1 && break; sleep 0.1; done

claim=$(redis-cli -s "$sock" script load "$(cat src/store/redis/claim.lua)")
noop=$(redis-cli -s "$sock" script load "return 1")
p='lr:{default}'
# Candidates travel as one argument: records "id US score US period" separated by RS.
us=$'\x1f'; rs=$'\x1e'
distinct=""   # 20 reps, distinct match scores (skill levels differ): usually one is read
tied=""       # 20 reps, all the same match score: all 20 are read and compared
for i in $(seq -w 19 -1 0); do
  redis-cli -s "$sock" hset "$p:state" "rep$i" "1000000000||0|||" >/dev/null
  distinct+="${distinct:+$rs}rep$i${us}0.$i${us}2026-11-28"
  tied+="${tied:+$rs}rep$i${us}0.5${us}2026-11-28"
done
ctx='{"lead":{"id":"x","attributes":{"age":41.0,"job":"management","marital":"married","education":"university.degree","default":"no","housing":"yes","loan":"no","contact":"cellular","month":"may","day_of_week":"thu","campaign":2.0,"pdays":999.0,"previous":0.0,"poutcome":"nonexistent","emp.var.rate":-1.8,"cons.price.idx":92.893,"cons.conf.idx":-46.2,"euribor3m":1.313,"nr.employed":5099.1,"industry":"finance","language":"en"}},"needs":{"pool":"default","required_skills":["language:en"],"preferred":[["industry:finance",1.0],["segment:nurture",1.0]]},"probability":0.1234,"segment":"nurture","model_version":"48ee002bf2a31a7a"}'

rps() { # prints requests per second of a redis-benchmark run
  redis-benchmark -s "$sock" -n "$N" -c "$C" -r 100000000 -q "$@" | tr '\r' '\n' |
    grep -o '[0-9.]* requests per second' | tail -1 | awk '{print $1}'
}
ping=$(rps ping)
noop_rps=$(rps evalsha "$noop" 0)
keys=(4 "$p:lead:__rand_int__" "$p:state" "$p:queue" "$p:seq")
claim_rps=$(rps evalsha "$claim" "${keys[@]}" new "__rand_int__" 1795838400000 0.1234 nurture "$ctx" "" "$distinct")
tied_rps=$(rps evalsha "$claim" "${keys[@]}" new "__rand_int__" 1795838400000 0.1234 nurture "$ctx" "" "$tied")
assigned=$(redis-cli -s "$sock" hgetall "$p:state" | awk -F'|' 'NR % 2 == 0 && $3 > 0' | wc -l)
echo "| what | requests/s | ratio to trivial EVALSHA |"
echo "|---|---|---|"
awk -v a="$ping" -v b="$noop_rps" -v c="$claim_rps" -v d="$tied_rps" 'BEGIN {
  printf "| PING | %.0f | %.2f |\n", a, a / b;
  printf "| EVALSHA of `return 1` (ceiling) | %.0f | 1.00 |\n", b;
  printf "| EVALSHA claim.lua, 20 reps, distinct match scores | %.0f | %.2f |\n", c, c / b;
  printf "| EVALSHA claim.lua, 20 reps, all tied | %.0f | %.2f |\n", d, d / b }'
echo
echo "($N requests, $C clients, unix socket, redis $(redis-server --version | awk '{print $3}'); reps that received leads: $assigned)"
