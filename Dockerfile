# The bridge and the two example consumers (fastpix-nats/examples) in one small image.
#   docker build -t fastpix-nats-bridge .
#   docker run --rm -p 8080:8080 -e FASTPIX_BRIDGE__NATS__URL=nats://nats:4222 \
#     -e FASTPIX_BRIDGE__WEBHOOK__SIGNING_SECRETS=... fastpix-nats-bridge

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78

# cargo-chef turns Cargo.toml/Cargo.lock into a recipe, so the dependency
# layer below is rebuilt only when dependencies change, not on every edit.
FROM rust:${RUST_VERSION}-slim-bookworm AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version ${CARGO_CHEF_VERSION}
# Set here so the dependency layer and the final build share one profile.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
# Dependencies only (cached layer), of exactly what the image ships: the
# bridge, then the two examples (whose package's dev-dependencies are kept to
# what its unit tests need), so no test-only crate of the bridge is compiled.
RUN cargo chef cook --release --locked --recipe-path recipe.json \
      -p fastpix-nats-bridge --bin fastpix-nats-bridge \
 && cargo chef cook --release --locked --recipe-path recipe.json \
      -p fastpix-nats --examples
# Then the source. The bridge is built on its own, as `cargo build --release`
# builds it: one cargo command with the examples would unify features across
# them and give the image another binary than the one measured.
COPY . .
RUN cargo build --release --locked -p fastpix-nats-bridge --bin fastpix-nats-bridge \
 && cargo build --release --locked -p fastpix-nats \
      --example live_stream_worker --example media_catalog \
 && mkdir -p /out \
 && cp target/release/fastpix-nats-bridge \
       target/release/examples/live_stream_worker \
       target/release/examples/media_catalog \
       /out/

# glibc and CA certificates, no shell, no package manager; runs as the
# unprivileged user `nonroot` (uid 65532). The healthcheck is the binary's
# own `healthcheck` subcommand, so no curl is needed.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /out/ /usr/local/bin/
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/fastpix-nats-bridge"]
CMD ["serve"]
