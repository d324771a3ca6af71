#!/usr/bin/env bash
# Installs the real peers the tests run against: Debian packages (mosquitto, socat,
# D-Bus/BlueZ mock) and a venv with Microsoft's Python SDK and pymodbus. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in mosquitto socat libdbus-1-dev pkg-config python3-dbusmock dbus libglib2.0-bin libfaketime; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv-peers/bin/python ]; then
  "$PY" -m venv .venv-peers
fi
stamp=.venv-peers/.requirements
if ! cmp -s tests/python/requirements.txt "$stamp" 2>/dev/null; then
  .venv-peers/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt
  cp tests/python/requirements.txt "$stamp"
fi
# Microsoft's DTDL parser (npm), for the generated models.
if [ ! -d tests/node/node_modules/@azure/dtdl-parser ]; then
  (cd tests/node && npm install --no-audit --no-fund --silent)
fi
echo "peers ready: $(mosquitto -h 2>&1 | head -1 | tr -d '\n'), socat $(socat -V | sed -n 2p | awk '{print $3}'), $(.venv-peers/bin/python -c 'import azure.iot.device, pymodbus; print("azure-iot-device", azure.iot.device.constant.VERSION if hasattr(azure.iot.device,"constant") else "?", "pymodbus", pymodbus.__version__)' 2>/dev/null)"
