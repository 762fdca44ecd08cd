#!/usr/bin/env bash
# Rebuilds the console screenshots in docs/console/: a server with the example team, the CRM
# history imported (performance boards as of 2017-06-30), targets, and a burst of bank leads
# (leadrouter bench) that fills every rep on shift and queues the rest, then every page in
# headless Chromium (shoot.py; needs Debian's chromium and `pip install playwright`).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q
bin=target/release/leadrouter
tmp=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$tmp"' EXIT
$bin keys new --role admin --id shots > "$tmp/key.txt"
token=$(sed -n 2p "$tmp/key.txt")
sed -n '/^\[\[key\]\]/,$p' "$tmp/key.txt" > "$tmp/keys.toml"
export LEADROUTER_TOKEN=$token
LEADROUTER__AUTH__KEYS_FILE="$tmp/keys.toml" LEADROUTER__SERVER__ADDR=127.0.0.1:50071 \
  LEADROUTER__ADMIN__ADDR=127.0.0.1:9481 LEADROUTER__LOG__REQUESTS=false $bin serve > "$tmp/serve.log" 2>&1 &
server=$!
sleep 2
s=http://127.0.0.1:50071
$bin import-history --server $s --data data/crm-sales-opportunities/sales_pipeline.csv.gz \
  --lead-id opportunity_id --rep sales_agent --assigned-at engage_date --closed-at close_date \
  --outcome deal_stage --won Won --lost Lost --value close_value > /dev/null
$bin set-target --server $s --scope team --period month --metric wins --value 400 > /dev/null
$bin set-target --server $s --scope rep --id anna-snelling --period month --metric assignments --value 60 > /dev/null
$bin bench --server $s --mode submit --connections 1 --concurrency 4 --warmup 0 --duration 1 > /dev/null
python3 docs/console/shoot.py http://127.0.0.1:9481 "$token" docs/console
echo "screenshots in docs/console/"
