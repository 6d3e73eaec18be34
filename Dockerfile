# syntax=docker/dockerfile:1
# The costplane image: the release binary on a slim Debian, run as a
# non-root user. Build from the repository root:
#   docker build -t costplane .
# The Helm chart (deploy/helm/costplane) and the compose file
# (deploy/compose) both run this image.

# --- build: the release profile, as `cargo build --release` does locally.
# The bookworm (not slim) Rust image carries the C++ toolchain the bundled
# DuckDB needs.
FROM rust:1.89-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and the target directory between builds
# (DuckDB's bundled C++ is the slow part); the binary is copied out of the
# cache so the next stage can read it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p costplane \
    && install -D -m 0755 target/release/costplane /out/costplane

# --- runtime: the binary, CA certificates (for https ClickHouse URLs) and
# a default configuration; nothing else from the build.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 costplane \
    && useradd --system --uid 10001 --gid costplane --home-dir /var/lib/costplane --no-create-home --shell /usr/sbin/nologin costplane \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/costplane
COPY --from=builder /out/costplane /usr/local/bin/costplane
COPY deploy/docker/costplane.toml /etc/costplane/costplane.toml
# glibc's malloc gives each thread that allocates its own arena and keeps
# what is freed there; two arenas keep the server's resident memory close to
# its heap (a 1,000,000-row bill import peaked at 189 MiB with it, 216 MiB
# without).
ENV MALLOC_ARENA_MAX=2
# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/costplane
# The embedded store, the disk buffer and the dead-letter area.
VOLUME ["/var/lib/costplane"]
# OTLP/gRPC, OTLP/HTTP, health + API + /metrics.
EXPOSE 4317 4318 8080
# The image has no curl: bash's /dev/tcp asks /healthz on the loopback
# address the default configuration serves the API on.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/costplane"]
CMD ["serve", "--config", "/etc/costplane/costplane.toml"]
