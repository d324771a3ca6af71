#!/usr/bin/env bash
# Measures recovery from injected faults and prints a table: fault, how it was injected,
# what was lost or duplicated, time to recover, whether a restart was needed.
#
#   tests/faults/run.sh [OUTAGE_S ...]      # default: 10 20 300
#
# Each outage length runs the fault tests of tests/tests/faults_*.rs with FAULT_OUTAGE_S
# set; they assert correctness and print FAULT-RESULT JSON lines, collected here. Recovery
# is measured from the end of the fault to the creation time of the first telemetry
# message after it (Modbus) or to the reconnection (hub). Figures depend on the machine's
# load; rerun rather than trust one table.
set -euo pipefail
cd "$(dirname "$0")/../.."
outages=("$@")
[ ${#outages[@]} -eq 0 ] && outages=(10 20 300)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cargo test -q -p bridge-e2e --test faults_modbus --test faults_hub --no-run
for s in "${outages[@]}"; do
  echo "== outage ${s} s" >&2
  log="target/faults-${s}s.log"
  FAULT_OUTAGE_S=$s cargo test -q -p bridge-e2e --no-fail-fast --test faults_modbus --test faults_hub -- \
    --nocapture rtu_adapter_unplugged_10s tcp_device half_open hub_outage > "$log" 2>&1 \
    || echo "some fault tests failed at ${s} s: see $log" >&2
  grep '^FAULT-RESULT ' "$log" | sed 's/^FAULT-RESULT //' >> "$out" || true
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows.sort(key=lambda r: (r["fault"], r["outageS"]))
# Modbus rows: what was polled was delivered once (duplicates counted); polls that could not
# reach the device produce nothing, which is not a loss. Hub rows count every message sent.
# Target: recovery within timeout + poll interval + 5 s (Modbus), detection within 1.5
# keep-alive periods (half-open hub), 5 s (hub back).
print("| fault | injection | outage | lost | duplicated | detected / offline reported | time to recover | target | restart |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    seen = r.get("detectedMs", r.get("offlineReportedMs"))
    print(f"| {r['fault']} | {r['injection']} | {r['outageS']} s | {r.get('lost', '-')} | {r['duplicates']} "
          f"| {'' if seen is None else f'{seen/1000:.1f} s'} | {r['recoveredMs']/1000:.2f} s | {r['targetMs']/1000:.1f} s "
          f"| {'yes' if r['restart'] else 'no'} |")
PY
