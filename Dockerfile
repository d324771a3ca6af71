# syntax=docker/dockerfile:1
# One image per module:
#   docker build --build-arg MODULE=bridge-modbus -t bridge-modbus:0.1.0 .
# Without a Rust builder image (for example with buildah and no registry), build the
# binary on the host and pick the `prebuilt` stage: see deploy/prove-image.sh.

ARG RUST_IMAGE=docker.io/library/rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG BIN_STAGE=build

# hadolint ignore=DL3006
FROM ${RUST_IMAGE} AS build
ARG MODULE=bridge-modbus
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p "${MODULE}" \
 && mkdir -p /out/spool \
 && cp "target/release/${MODULE}" /out/module

FROM scratch AS prebuilt
ARG MODULE=bridge-modbus
COPY deploy/image-root/ /out/
COPY target/release/${MODULE} /out/module

# The stage that provides /out (the binary and an empty spool directory).
# hadolint ignore=DL3006
FROM ${BIN_STAGE} AS bin

# hadolint ignore=DL3006
FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="edge-bridge module" \
      org.opencontainers.image.description="Azure IoT Edge field-protocol module (Modbus)" \
      org.opencontainers.image.licenses="MIT"
COPY --from=bin --chown=65532:20 /out/ /opt/edge-bridge/
COPY device-maps/ /opt/edge-bridge/device-maps/
# Not root; group 20 (dialout) can open serial devices mapped into the container.
USER 65532:20
ENV EDGE_BRIDGE_SPOOL_DIR=/opt/edge-bridge/spool
HEALTHCHECK --interval=60s --timeout=5s CMD ["/opt/edge-bridge/module", "--version"]
ENTRYPOINT ["/opt/edge-bridge/module"]
