# syntax=docker/dockerfile:1
#
# The bmad2pf image: one static binary, the example bundle, nothing else.
#
#   docker build -t bmad2pf .
#   docker run --rm -p 8000:8000 -v bmad2pf-data:/data bmad2pf
#
# Stages:
#   build    compiles `bmad2pf` (the package `cargo test --workspace` in .ci/run
#            tests) as a static x86_64 musl binary, and generates the bundle of
#            examples/planning with it, so the image serves without sources.
#   busybox  only supplies a static `wget` for the HEALTHCHECK (see below).
#   runtime  distroless "static" (no shell, no libc, no package manager),
#            running as the distroless `nonroot` user, uid/gid 65532
#            (build argument RUNTIME_UID).
#
# Serving your own agents: generate a bundle (`bmad2pf generate --src DIR --out
# generated`) and mount it over the example's:
#   docker run -p 8000:8000 -v "$PWD/generated:/app/bundle:ro" -v bmad2pf-data:/data bmad2pf
# The bundle's runtime.yaml is read; the ENV below (and any `-e` you add)
# overrides it. The arguments after the image name replace CMD, so
# `docker run IMAGE validate --src /src` runs any other command.
# Configuration and operations: docs/operations.md.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY examples examples
# The cargo registry and target dir are BuildKit cache mounts (kept between
# builds, not in the image), so the binary is copied out in the same step.
# The readelf test fails the build if the binary asks for a dynamic loader.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p bmad2pf --target x86_64-unknown-linux-musl \
    && mkdir -p /out/bin /out/data/docs /out/data/replay \
    && cp target/x86_64-unknown-linux-musl/release/bmad2pf /out/bin/bmad2pf \
    && if readelf --program-headers /out/bin/bmad2pf | grep -q 'program interpreter'; then \
           echo 'bmad2pf is not statically linked' >&2; exit 1; \
       fi \
    && /out/bin/bmad2pf generate --src examples/planning --out /out/bundle --quiet

# Distroless has no shell and no HTTP client, and bmad2pf has no health
# subcommand; busybox's static binary provides both `sh` (to read PORT) and
# `wget` for the HEALTHCHECK, and nothing else is taken from this image.
FROM busybox:1.36-musl AS busybox

FROM gcr.io/distroless/static-debian12:nonroot AS runtime
# The user the server runs as: distroless `nonroot` (65532). Platforms that
# mount volumes owned by root (Fly.io, Railway) need 0 here for a file store
# on the volume: `--build-arg RUNTIME_UID=0` (see docs/operations.md).
ARG RUNTIME_UID=65532
COPY --from=busybox /bin/busybox /busybox
COPY --from=build /out/bin/bmad2pf /usr/local/bin/bmad2pf
COPY --from=build /out/bundle /app/bundle
# The store directories exist in the image, owned by the runtime user, so a
# fresh named volume mounted on /data starts with the right owner.
COPY --from=build --chown=${RUNTIME_UID}:${RUNTIME_UID} /out/data /data
# Stores live under the volume (the database is /data/bmad2pf.db); JSON logs for log collectors; listen on every
# interface. PORT wins over runtime.yaml's server.port (platforms set it).
ENV PORT=8000 \
    BMAD2PF_SERVER_HOST=0.0.0.0 \
    BMAD2PF_DOCS_PATH=/data/docs \
    BMAD2PF_MEMORY_PATH=/data \
    BMAD2PF_REPLAY_PATH=/data/replay \
    BMAD2PF_LOGGING_FORMAT=json
WORKDIR /data
USER ${RUNTIME_UID}:${RUNTIME_UID}
EXPOSE 8000
VOLUME ["/data"]
# /health answers 200 while the process serves HTTP, also when `degraded`
# (a backend down): restarting would not bring Redis back. Alert on the body's
# `status` instead (docs/operations.md). Set PORT, not `--port`, to move the
# port: this check reads PORT.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/busybox", "sh", "-c", "exec /busybox wget -q -T 4 -O /dev/null \"http://127.0.0.1:${PORT:-8000}/health\""]
# SIGTERM: stop accepting, finish requests in flight (streamed runs too), wait
# for running agents, then exit 0 with every store write durable.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/bmad2pf"]
CMD ["serve", "--bundle", "/app/bundle"]
