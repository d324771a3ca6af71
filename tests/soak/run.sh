#!/usr/bin/env bash
# Soak: tests/soak/run.sh [MINUTES] [DEVICES]   (default 60 minutes, 500 devices)
# bridge-modbus in a child process against edgehub-sim, a fault every 2 minutes, RSS
# every 10 s as CSV, counters and RSS growth after warm-up at the end. CI runs 1 minute.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench -q -p bridge-e2e --bench soak -- "${1:-60}" "${2:-500}"
