#!/usr/bin/env bash
# Fuzzes every target for N executions each (default 10 million) in release mode and
# prints a table: executions, time, rate, distinct outcomes, pool size, findings.
# Findings are written to fuzz/crashes/ and make the script fail; fix them and keep the
# reproducer (cargo test -p bridge-fuzz replays every file there).
#   fuzz/run.sh [EXECUTIONS] [TARGET...]      (FUZZ_SEED=n for another sequence)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q --release -p bridge-fuzz -- "${1:-10000000}" "${@:2}"
