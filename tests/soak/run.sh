#!/usr/bin/env bash
# Soak: tests/soak/run.sh [MINUTES] [DEVICES] [ADVERTISERS]   (default 60 minutes, 500
# Modbus devices, 50 BLE advertisers). bridge-modbus (simulated devices -> edgehub-sim)
# and bridge-ble (python-dbusmock BlueZ -> mosquitto) in child processes, a fault every
# 2 minutes (edgeHub down, BlueZ restart, broker restart, twin churn, devices off), RSS
# of both every 10 s as CSV, counters, losses and RSS growth after warm-up at the end.
# CI runs 1 minute.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench -q -p bridge-e2e --bench soak -- "${1:-60}" "${2:-500}" "${3:-50}"
