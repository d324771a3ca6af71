#!/usr/bin/env bash
# Runs every test against real peers: formatting, lints, unit tests, end-to-end tests
# (edgehub-sim + Microsoft's Python SDK, mosquitto, pymodbus over TCP and socat ptys),
# device-map validation. Installs the peers first if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/setup-peers.sh
echo "== fmt";    cargo fmt --all -- --check
echo "== clippy"; cargo clippy --workspace --all-targets -- -D warnings
echo "== generated schemas"; cargo test -q -p bridge-modbus -p bridge-ble --lib schema_files
echo "== device-map schemas"; .venv-peers/bin/python tests/python/check_maps.py
echo "== device-map lint"; .venv-peers/bin/python tests/python/lint_maps.py
echo "== README field reference"; python3 deploy/gen_field_reference.py --check
echo "== tests";  cargo test --workspace --no-fail-fast
echo "== fuzz (short: 100,000 executions per target; fuzz/run.sh for 10 million)"; fuzz/run.sh 100000
echo "== soak (1 minute, 100 devices; tests/soak/run.sh for the hour)"; tests/soak/run.sh 1 100
echo "== image proof (hadolint, buildah, podman)"; deploy/prove-image.sh bridge-modbus
deploy/prove-image.sh bridge-ble
echo "all tests passed"
