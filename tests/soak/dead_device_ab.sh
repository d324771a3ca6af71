#!/usr/bin/env bash
# One dead device among N (issue 16): tests/soak/dead_device_ab.sh [ROUNDS] [DEVICES]
# (default 3 rounds, 1000 devices). Alternates modbus_scale without (A) and with (B)
# DEAD_DEVICES=1, A B A B ..., the module's process under `chrt -f $RT_PRIORITY`
# (default 10; needs root; RT_PRIORITY= empty runs it at normal priority), and prints
# each run's poll-jitter p99 (|poll-to-poll - interval| over every live device), then
# the median of the per-round differences B - A.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
n=${2:-1000}
export RT_PRIORITY=${RT_PRIORITY-10}
cargo bench -q -p bridge-e2e --bench modbus_scale --no-run 2>/dev/null
p99() { sed -n 's/.*jitter mean [0-9.]* ms max [0-9]* ms p99 \([0-9-]*\) ms.*/\1/p' | head -1; }
diffs=()
for r in $(seq 1 "$rounds"); do
    a=$(DEAD_DEVICES=0 cargo bench -q -p bridge-e2e --bench modbus_scale -- "$n" | tee -a /dev/stderr | p99)
    b=$(DEAD_DEVICES=1 cargo bench -q -p bridge-e2e --bench modbus_scale -- "$n" | tee -a /dev/stderr | p99)
    echo "round $r: p99 without the dead device ${a} ms, with it ${b} ms"
    diffs+=($((b - a)))
done
sorted=$(printf '%s\n' "${diffs[@]}" | sort -n | tr '\n' ' ')
median=$(printf '%s\n' "${diffs[@]}" | sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}')
echo "differences (with - without), sorted: ${sorted}ms; median ${median} ms (RT_PRIORITY=${RT_PRIORITY:-none})"
