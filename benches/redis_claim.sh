#!/usr/bin/env bash
# Claims per second of claim.lua on one Redis core, driven directly by redis-benchmark with
# EVALSHA, 20 candidate reps and a representative lead context; beside it, in the same run, a
# trivial EVALSHA (the ceiling for a script round trip) and PING.
#   usage: benches/redis_claim.sh [requests] [clients] [pipeline]     (prints a Markdown table)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
C=${2:-50}
P=${3:-1}   # requests per pipeline (the service pipelines the claims of a SubmitLeads batch)
dir=$(mktemp -d)
sock="$dir/redis.sock"
redis-server --port 0 --unixsocket "$sock" --dir "$dir" --save "" --appendonly no --daemonize yes \
  --logfile "$dir/redis.log" >/dev/null
trap 'redis-cli -s "$sock" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
for _ in $(seq 50); do redis-cli -s "$sock" ping >/dev/null 2>&1 && break; sleep 0.1; done

# The service prefixes each script with events.lua (event append, report counters, helpers),
# as here. NO_COUNTERS=1 stubs the report counters out, to measure what they cost.
prelude=$(cat src/store/redis/events.lua)
if [ "${NO_COUNTERS:-0}" = 1 ]; then
  prelude=${prelude/local function rpt_tally(t)/local function rpt_tally(t) do return end}
fi
claim=$(redis-cli -s "$sock" script load "$prelude
$(cat src/store/redis/claim.lua)")
noop=$(redis-cli -s "$sock" script load "return 1")
p='lr:{default}'
# The pool's rep table: 20 reps in slots 0..19 (generation 1, capacity 10^9, no quota), one
# 68-byte record each, packed with the layout the service uses (src/store/redis/state.rs).
S='<i4i4di4i4i4i4i4i4i4i4i4i4i4i4i4'
redis-cli -s "$sock" eval "for i = 0, 19 do
  redis.call('SETRANGE', KEYS[1], i * 68, struct.pack('$S', 1000000000, 0, -1, 1,
    -1, 0, 0, -1, 0, 0, -1, 0, 0, -1, 0, 0))
end" 1 "$p:table" >/dev/null
# Candidates travel as one argument (format in src/store/redis/claim.lua): per rep a flag (1
# opens a match-score group, 2 ties with the one before), slot (2 base-255 digits, each + 1),
# generation (3), periods: day (3: 20785 = 2026-11-28), ISO week (2: 2969), month (2: 24322),
# quarter (2: 8107), ramp permille (2: 1000), id length, id.
distinct=""   # 20 reps, distinct match scores (skill levels differ): usually one is read
tied=""       # 20 reps, all the same match score: all 20 are read and compared
for i in $(seq 19 -1 0); do
  id=$(printf 'rep%02d' "$i")
  rest=$(printf '\\x01\\x%02x\\x01\\x01\\x02\\x01\\x52\\x83\\x0c\\xa5\\x60\\x62\\x20\\xcb\\x04\\xec\\x05' $((i + 1)))
  distinct+=$'\x01'"$(printf "$rest")$id"
  flag=$'\x02'; [ -z "$tied" ] && flag=$'\x01'
  tied+="$flag$(printf "$rest")$id"
done
ctx='{"lead":{"id":"x","attributes":{"age":41.0,"job":"management","marital":"married","education":"university.degree","default":"no","housing":"yes","loan":"no","contact":"cellular","month":"may","day_of_week":"thu","campaign":2.0,"pdays":999.0,"previous":0.0,"poutcome":"nonexistent","emp.var.rate":-1.8,"cons.price.idx":92.893,"cons.conf.idx":-46.2,"euribor3m":1.313,"nr.employed":5099.1,"industry":"finance","language":"en"}},"needs":{"pool":"default","required_skills":["language:en"],"preferred":[["industry:finance",1.0],["segment:nurture",1.0]]},"probability":0.1234,"segment":"nurture","model_version":"48ee002bf2a31a7a"}'

rps() { # prints "requests/s server-us-per-call" of a redis-benchmark run
  redis-cli -s "$sock" config resetstat >/dev/null
  local r u
  r=$(redis-benchmark -s "$sock" -n "$N" -c "$C" -P "$P" -r 100000000 -q "$@" | tr '\r' '\n' |
    grep -o '[0-9.]* requests per second' | tail -1 | awk '{print $1}')
  # Server time per call from INFO commandstats: CPU the command itself took inside Redis,
  # steadier than requests/s when the load generator shares the cores.
  u=$(redis-cli -s "$sock" info commandstats | tr -d '\r' |
    grep -E "^cmdstat_$(echo "$1" | tr 'A-Z' 'a-z'):" | grep -o 'usec_per_call=[0-9.]*' | cut -d= -f2)
  echo "$r $u"
}
ping=$(rps ping)
noop_rps=$(rps evalsha "$noop" 0)
keys=(12 "$p:lead:__rand_int__" "$p:table" "$p:queue" "$p:seq" "$p:slots" "$p:gq:g" "$p:groups"
  "$p:events" "$p:evseq" "$p:due" "$p:held" "$p:rpt:")
# After the candidates: group, its skills, offer ms, SLA ms, event retention (count, age ms),
# event reason, max offers, queue TTL ms, report day (20785 = 2026-11-28), expected value.
# SLA_MS=300000 measures a claim that also sets a deadline.
tail_args=(g '["language:en"]' "${OFFER_MS:-0}" "${SLA_MS:-0}" 100000 604800000 "" 3 0 20785 0)
claim_rps=$(rps evalsha "$claim" "${keys[@]}" new "__rand_int__" 1795838400000 0.1234 nurture "$ctx" "" "$distinct" "${tail_args[@]}")
tied_rps=$(rps evalsha "$claim" "${keys[@]}" new "__rand_int__" 1795838400000 0.1234 nurture "$ctx" "" "$tied" "${tail_args[@]}")
assigned=$(redis-cli -s "$sock" eval "local t, n = redis.call('GET', KEYS[1]), 0
  for i = 0, #t / 68 - 1 do
    local _c, load = struct.unpack('$S', t, i * 68 + 1)
    if load > 0 then n = n + 1 end
  end
  return n" 1 "$p:table")
echo "| what | requests/s | ratio to trivial EVALSHA | server µs per call |"
echo "|---|---|---|---|"
row() { # label, "rps us", ceiling rps
  set -- "$1" $2 "$3"
  awk -v l="$1" -v r="$2" -v u="$3" -v b="$4" 'BEGIN { printf "| %s | %.0f | %.2f | %s |\n", l, r, r / b, u }'
}
base=${noop_rps%% *}
row "PING" "$ping" "$base"
row "EVALSHA of \`return 1\` (ceiling)" "$noop_rps" "$base"
row "EVALSHA claim.lua, 20 reps, distinct match scores" "$claim_rps" "$base"
row "EVALSHA claim.lua, 20 reps, all tied" "$tied_rps" "$base"
echo
echo "($N requests, $C clients, pipeline $P, unix socket, redis $(redis-server --version | awk '{print $3}'); reps that received leads: $assigned)"
