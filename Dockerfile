# syntax=docker/dockerfile:1
#
# One image with both bakery binaries, for linux/amd64 and linux/arm64 (the
# Raspberry Pi 5):
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     -t ghcr.io/bakery-telemetry/bakery:0.1.0 --push .
#
# The chart runs /usr/local/bin/bakery-agent and /usr/local/bin/bakery-collector.
# This file cannot be built where bakery is developed (no Docker engine there);
# .github/workflows/ci.yml builds it. `cargo test -p xtask` checks that it copies
# exactly the binaries `cargo xtask dist` builds (xtask/src/dist.rs, BINARIES).
#
# Allocator: bakery uses Rust's default, the system allocator (glibc malloc),
# which takes the page size from the kernel at run time and so works on the Pi
# 5's 16 KiB pages. No jemalloc: one built for 4 KiB pages aborts at start there
# (a test fails if jemalloc enters Cargo.lock without JEMALLOC_SYS_WITH_LG_PAGE=16).

ARG RUST_VERSION=1.95

# The build stage runs on the builder's own platform and cross-compiles for
# the target one: much faster than building under arm64 emulation.
FROM --platform=$BUILDPLATFORM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
WORKDIR /src

# Target triple, and for a foreign architecture the Debian cross toolchain
# (linker and C compiler for ring). glibc 2.36 on both sides: bookworm here,
# distroless cc-debian12 at run time.
RUN set -eux; \
    case "$TARGETARCH" in \
      amd64) triple=x86_64-unknown-linux-gnu; gnu=x86_64-linux-gnu; debarch=amd64 ;; \
      arm64) triple=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu; debarch=arm64 ;; \
      *) echo "unsupported TARGETARCH: $TARGETARCH" >&2; exit 1 ;; \
    esac; \
    echo "$triple" > /rust-target; \
    : > /cross-env; \
    if [ "$(dpkg --print-architecture)" != "$debarch" ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends "gcc-$gnu" "libc6-dev-$debarch-cross"; \
      rm -rf /var/lib/apt/lists/*; \
      upper="$(echo "$triple" | tr 'a-z-' 'A-Z_')"; \
      lower="$(echo "$triple" | tr '-' '_')"; \
      { echo "export CARGO_TARGET_${upper}_LINKER=$gnu-gcc"; \
        echo "export CC_${lower}=$gnu-gcc"; \
        echo "export AR_${lower}=$gnu-ar"; } > /cross-env; \
    fi; \
    rustup target add "$triple"

COPY . .

# `cargo xtask dist` builds the release binaries (--locked) into
# target/dist/<triple>/; they are copied out of the cache mount to /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=bakery-target-$TARGETARCH \
    set -eux; \
    . /cross-env; \
    triple="$(cat /rust-target)"; \
    cargo xtask dist --target "$triple"; \
    mkdir -p /out; \
    cp "target/dist/$triple/"* /out/

# Distroless "cc": glibc and libgcc_s (Rust's unwinder) and nothing else; no
# shell. Runs as the nonroot user (65532) unless the pod says otherwise (the
# agent's pod runs it as uid 0 for SYS_PTRACE: see charts/bakery/values.yaml).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/bakery-agent /out/bakery-collector /usr/local/bin/
# One glibc malloc arena: by default each thread that allocates gets its own,
# and the collector's freed memory stays spread over them (100 nodes: 63 MiB
# RSS with the default, 55 MiB with one, for the same CPU per value;
# `cargo xtask bench ingest` runs the collector with these ENV lines).
ENV MALLOC_ARENA_MAX=1
USER 65532:65532
CMD ["/usr/local/bin/bakery-agent", "--help"]
