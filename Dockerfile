# syntax=docker/dockerfile:1
# One Dockerfile, one target per service:
#   docker build --target api-rest  -t air-quality-api/api-rest  .
#   docker build --target api-cache -t air-quality-api/api-cache .
# (docker-compose builds both.) Dependencies are compiled in their own layer
# (cargo-chef), so a change to our code rebuilds only our crates. The runtime
# images hold one static-ish binary on distroless/cc: no shell, no package
# manager, a non-root user; the binary is its own health check.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# The dependency list only: this layer changes when Cargo.toml/Cargo.lock do.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# The docs page's files (GET /docs): the pinned npm package, without its
# install scripts; api-rest's build.rs embeds them.
FROM node:20-bookworm-slim AS docs-ui
WORKDIR /docs-ui
COPY api-rest/docs-ui/package.json api-rest/docs-ui/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json -p api-rest -p api-cache
COPY . .
COPY --from=docs-ui /docs-ui/node_modules api-rest/docs-ui/node_modules
RUN cargo build --release --locked -p api-rest -p api-cache \
 && install -D -m 0755 target/release/api-rest /out/api-rest \
 && install -D -m 0755 target/release/api-cache /out/api-cache

# distroless/cc: glibc and libgcc for the binaries, CA certificates, user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ENV LOG_FORMAT=json
USER 65532:65532

FROM runtime AS api-rest
COPY --from=builder /out/api-rest /usr/local/bin/api-rest
ENV API_REST_PORT=5000
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/api-rest", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/api-rest"]

FROM runtime AS api-cache
COPY --from=builder /out/api-cache /usr/local/bin/api-cache
ENV API_CACHE_PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/api-cache", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/api-cache"]
