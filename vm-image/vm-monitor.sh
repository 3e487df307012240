#!/bin/bash
# vm-monitor.sh — runs inside a build VM and tells the controller the VM is alive.
#
#   vm-monitor.sh <controller> <build-id> <worker-id> <api-key> [interval]
#
# <api-key> is the build's token (ewb_…). Every argument may come from the environment instead,
# so the token need not appear in `ps`: EXPO_MONITOR_CONTROLLER, EXPO_MONITOR_BUILD_ID,
# EXPO_MONITOR_WORKER_ID, EXPO_MONITOR_TOKEN (or EXPO_MONITOR_TOKEN_FILE, a file whose first line
# is the token; - or /dev/stdin reads it from standard input), EXPO_MONITOR_INTERVAL_S (default 30).
# A positional argument wins over its variable. Also: EXPO_MONITOR_PROGRESS_FILE (default
# ${TMPDIR:-/tmp}/expo-worker-<build-id>.progress: the build writes an integer 0–100 there),
# EXPO_MONITOR_CURL_TIMEOUT_S (default 10), EXPO_MONITOR_MAX_BACKOFF_S (default: the interval).
#
# Each beat POSTs {"workerId","progress"} to <controller>/api/v1/builds/<id>/heartbeat.
# The token reaches curl in a config on its stdin (`curl -K -`), never in an argv.
#
# States: beating (200 → sleep the interval) ⇄ retrying (network error, 5xx, 408, 429 → sleep
# 1, 2, 4… s, capped at EXPO_MONITOR_MAX_BACKOFF_S and never above the interval) → over.
# Exit codes: 0 the build is over (409/410) or SIGTERM/SIGINT; 2 the token was refused
# (401/403: it will not heal); 3 any other 4xx (a wrong URL or a bug: it will not heal either);
# 64 bad arguments; 69 curl missing.
#
# Portable to macOS's bash 3.2: no associative arrays, no mapfile, no ${x,,}, no arrays at all
# (an empty array under `set -u` is an error in 3.2), integer `sleep` only.
VM_MONITOR_VERSION=1.0.1

set -u

me=${0##*/}

usage() {
  cat <<EOF
Usage: $me <controller> <build-id> <worker-id> <api-key> [interval]
       $me --version | --help

Sends a heartbeat for build <build-id> to <controller> every [interval] seconds (default 30).
Arguments may be given by environment instead: EXPO_MONITOR_CONTROLLER, EXPO_MONITOR_BUILD_ID,
EXPO_MONITOR_WORKER_ID, EXPO_MONITOR_TOKEN (or EXPO_MONITOR_TOKEN_FILE), EXPO_MONITOR_INTERVAL_S.
Progress (0-100) is read from EXPO_MONITOR_PROGRESS_FILE
(default \${TMPDIR:-/tmp}/expo-worker-<build-id>.progress).
Exit: 0 build over or stopped, 2 token refused, 3 request refused, 64 usage, 69 no curl.
EOF
}

say() { printf '[VM Monitor] %s\n' "$*"; }
warn() { printf '[VM Monitor] %s\n' "$*" >&2; }
die_usage() {
  printf '%s: %s\n\n' "$me" "$1" >&2
  usage >&2
  exit 64
}

case "${1:-}" in
  --version) printf '%s\n' "$VM_MONITOR_VERSION"; exit 0 ;;
  --help | -h) usage; exit 0 ;;
  -*) die_usage "unknown option '$1'" ;;
esac
[ $# -le 5 ] || die_usage "too many arguments ($#)"

controller=${1:-${EXPO_MONITOR_CONTROLLER:-}}
build_id=${2:-${EXPO_MONITOR_BUILD_ID:-}}
worker_id=${3:-${EXPO_MONITOR_WORKER_ID:-}}
token=${4:-${EXPO_MONITOR_TOKEN:-}}
interval=${5:-${EXPO_MONITOR_INTERVAL_S:-30}}
curl_timeout=${EXPO_MONITOR_CURL_TIMEOUT_S:-10}
max_backoff=${EXPO_MONITOR_MAX_BACKOFF_S:-}
token_file=${EXPO_MONITOR_TOKEN_FILE:-}
if [ -z "$token" ] && [ -n "$token_file" ]; then
  # Standard input is read where it is (opening /dev/stdin fails on Linux when it is a socket).
  case $token_file in
    - | /dev/stdin) IFS= read -r token || [ -n "$token" ] ;;
    *) IFS= read -r token <"$token_file" || [ -n "$token" ] ;;
  esac || die_usage "cannot read a token from EXPO_MONITOR_TOKEN_FILE ($token_file)"
  token=${token%$'\r'}
fi
# Children (curl, sleep) need none of these, and should not carry the token in their environment.
unset EXPO_MONITOR_TOKEN EXPO_MONITOR_TOKEN_FILE
# Standard input may have carried the token; nothing else is read from it.
exec </dev/null

[ -n "$controller" ] || die_usage "missing <controller> (or EXPO_MONITOR_CONTROLLER)"
[ -n "$build_id" ] || die_usage "missing <build-id> (or EXPO_MONITOR_BUILD_ID)"
[ -n "$worker_id" ] || die_usage "missing <worker-id> (or EXPO_MONITOR_WORKER_ID)"
[ -n "$token" ] || die_usage "missing <api-key> (or EXPO_MONITOR_TOKEN / EXPO_MONITOR_TOKEN_FILE)"

# Regexes live in variables: bash 3.2 treats a quoted right-hand side of =~ as a literal string.
re_url='^https?://[^[:space:]]+$'
re_build='^[a-z2-7]{16}$'
re_worker='^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'
# The token goes inside a double-quoted curl config value: no quotes, backslashes or spaces.
re_token='^[A-Za-z0-9._~+/=-]+$'
re_count='^[0-9]{1,6}$'

[[ $controller =~ $re_url ]] || die_usage "controller must be an http:// or https:// URL, got '$controller'"
[[ $build_id =~ $re_build ]] || die_usage "build id must match $re_build, got '$build_id'"
[[ $worker_id =~ $re_worker ]] || die_usage "worker id must match $re_worker, got '$worker_id'"
[[ $token =~ $re_token ]] || die_usage "the token has characters a build token never has"
positive() { [[ $1 =~ $re_count ]] && [ $((10#$1)) -gt 0 ]; }
positive "$interval" || die_usage "interval must be a positive whole number of seconds, got '$interval'"
positive "$curl_timeout" || die_usage "EXPO_MONITOR_CURL_TIMEOUT_S must be a positive whole number, got '$curl_timeout'"
interval=$((10#$interval))
curl_timeout=$((10#$curl_timeout))
if [ -n "$max_backoff" ]; then
  positive "$max_backoff" || die_usage "EXPO_MONITOR_MAX_BACKOFF_S must be a positive whole number, got '$max_backoff'"
  max_backoff=$((10#$max_backoff))
  [ "$max_backoff" -le "$interval" ] || max_backoff=$interval
else
  max_backoff=$interval
fi

while :; do
  case $controller in
    */) controller=${controller%/} ;;
    *) break ;;
  esac
done
tmp_root=${TMPDIR:-/tmp}
tmp_root=${tmp_root%/}
progress_file=${EXPO_MONITOR_PROGRESS_FILE:-$tmp_root/expo-worker-$build_id.progress}
url="$controller/api/v1/builds/$build_id/heartbeat"

command -v curl >/dev/null 2>&1 || {
  warn "curl not found on PATH; cannot send heartbeats"
  exit 69
}

work=$(mktemp -d "$tmp_root/vm-monitor.XXXXXX") || {
  warn "cannot create a temporary directory in $tmp_root"
  exit 1
}
child=''
stop() {
  if [ -n "$child" ]; then
    # Stop the sleep or curl in flight and reap it, so nothing outlives the monitor.
    kill "$child" 2>/dev/null
    wait "$child" 2>/dev/null
  fi
  say "Stopped by signal"
  exit 0
}
trap 'rm -rf "$work"' EXIT
trap stop TERM INT

# Waits for the background child, so that a signal runs its trap at once instead of after the
# child ends (bash defers traps while a foreground child runs). Returns the child's status.
wait_child() {
  local status
  wait "$child"
  status=$?
  child=''
  return "$status"
}

progress=0
read_progress() {
  local raw=''
  [ -r "$progress_file" ] || return 0
  IFS= read -r raw <"$progress_file" 2>/dev/null
  raw=${raw//[[:space:]]/}
  # Missing, empty or garbage keeps the last good value.
  if [[ $raw =~ $re_count ]] && [ $((10#$raw)) -le 100 ]; then
    progress=$((10#$raw))
  fi
}

# One POST in the background; `child` is curl itself (a background pipeline's $! is its last
# command), so a signal can stop it. Writes the HTTP status (000 when none) to $work/code.
post_heartbeat() {
  printf 'header = "Authorization: Bearer %s"\n' "$token" |
    curl -q -sS -K - -X POST \
      --proto '=http,https' \
      --connect-timeout "$curl_timeout" --max-time "$curl_timeout" \
      -H 'content-type: application/json' \
      --data-binary "{\"workerId\":\"$worker_id\",\"progress\":$progress}" \
      -o "$work/body" -w '%{http_code}' \
      "$url" >"$work/code" 2>"$work/err" &
  child=$!
}

# The first 200 bytes of the answer, on one line, for the log.
answer() {
  head -c 200 "$work/body" 2>/dev/null | tr '\n' ' '
}

say "Starting for build $build_id"
say "Sending heartbeats every ${interval}s to $controller"
say "Reading progress from $progress_file"

backoff=1
while :; do
  read_progress
  : >"$work/body"
  post_heartbeat
  wait_child
  curl_status=$?
  code=$(cat "$work/code" 2>/dev/null)
  retry=0
  if [ "$curl_status" -ne 0 ]; then
    retry=1
    warn "Heartbeat failed: $(tr '\n' ' ' <"$work/err" 2>/dev/null)(curl exit $curl_status); retrying in ${backoff}s"
  else
    case $code in
      2??)
        say "Heartbeat sent (progress: $progress%)"
        backoff=1
        ;;
      409 | 410)
        say "Build $build_id is over (HTTP $code); exiting"
        exit 0
        ;;
      401 | 403)
        warn "Heartbeat refused (HTTP $code): the token is not valid for build $build_id; exiting. $(answer)"
        exit 2
        ;;
      408 | 429 | 5??)
        retry=1
        warn "Heartbeat failed (HTTP $code); retrying in ${backoff}s. $(answer)"
        ;;
      *)
        warn "Heartbeat refused (HTTP $code); exiting. $(answer)"
        exit 3
        ;;
    esac
  fi
  if [ "$retry" -eq 1 ]; then
    delay=$backoff
    backoff=$((backoff * 2))
    [ "$backoff" -le "$max_backoff" ] || backoff=$max_backoff
  else
    delay=$interval
  fi
  sleep "$delay" &
  child=$!
  wait_child
done
