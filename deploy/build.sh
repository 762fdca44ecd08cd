#!/usr/bin/env bash
# The release build, one command shared by deploy/Dockerfile and .ci/run: locked dependencies,
# only the leadrouter binary. Copies it to $1 when given.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin leadrouter
if [ $# -gt 0 ]; then
  mkdir -p "$1"
  cp target/release/leadrouter "$1/leadrouter"
fi
