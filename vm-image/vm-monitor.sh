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
# Arguments are checked only for what keeps the request safe, so any test ids work
# (`vm-monitor.sh http://localhost:3000 test-build-123 test-worker-456 test-api-key 10`):
# <build-id> and <worker-id> are 1–128 of A-Z a-z 0-9 . _ - (the build id, a URL path segment,
# may not start with '.', which refuses '.' and '..'); the token is RFC 6750 b64token characters
# (A-Z a-z 0-9 - . _ ~ + / =), which need no escaping inside a double-quoted curl config value.
#
# <controller> may be several URLs separated by spaces (several controllers on one database):
# beats go to one of them; when curl gets no answer from it (refused, reset, timed out) or it
# answers 502, 503 or 504, the next is tried at once, round-robin (A, B, A…); the backoff below
# applies only once every one failed in a row.
#
# Each beat POSTs {"workerId","progress"} to <controller>/api/v1/builds/<id>/heartbeat.
# The token reaches curl in a config on its stdin (`curl -K -`), never in an argv.
# Standard output carries the monitor's life (start, beats, end); standard error the rest.
#
# States: beating (200 → sleep the interval) ⇄ retrying (network error, 5xx, 408, 429 → sleep
# 1, 2, 4… s, capped at EXPO_MONITOR_MAX_BACKOFF_S and never above the interval; with several
# controllers, a network error or 502/503/504 first moves to the next one without sleeping) → over.
# Exit codes: 0 the build is over (409/410) or SIGTERM/SIGINT/SIGHUP; 2 the token was refused
# (401/403: it will not heal); 3 any other 4xx (a wrong URL or a bug: it will not heal either);
# 64 bad arguments; 69 curl missing.
#
# curl's answer goes to files in ${TMPDIR:-/tmp}/vm-monitor.<pid>.XXXXXX, not through a command
# substitution: a trap runs at once only while the shell sits in `wait` on a background curl;
# reading curl's output would defer SIGTERM until curl ends. Every exit removes the directory; a
# monitor killed outright (SIGKILL) cannot, so each monitor first removes the
# vm-monitor.<pid>.* directories it owns whose <pid> no longer runs.
#
# Portable to macOS's bash 3.2: no associative arrays, no mapfile, no ${x,,}, no arrays at all
# (an empty array under `set -u` is an error in 3.2), integer `sleep` only.
VM_MONITOR_VERSION=1.2.0

set -u
# Byte-wise regexes: in some locales [A-Z] also matches lower-case or accented letters.
LC_ALL=C

me=${0##*/}

usage() {
  cat <<EOF
Usage: $me <controller> <build-id> <worker-id> <api-key> [interval]
       $me --version | --help

Sends a heartbeat for build <build-id> to <controller> every [interval] seconds (default 30).
  <controller>  http:// or https:// URL, e.g. http://localhost:3000, or several separated by
                spaces (one argument), tried in turn when one does not answer
  <build-id>    1-128 of A-Z a-z 0-9 . _ - (no leading .)
  <worker-id>   1-128 of A-Z a-z 0-9 . _ -
  <api-key>     the build token: A-Z a-z 0-9 - . _ ~ + / = only
  [interval]    whole seconds, at least 1
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

# Only what keeps the request well-formed is checked; the controller judges the rest.
# Regexes live in variables: bash 3.2 treats a quoted right-hand side of =~ as a literal string.
re_url='^https?://[^[:space:]]+$'
# A URL path segment: no '/', '?', '#', '%'; no leading '.', so never '.' or '..'.
re_build='^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$'
# Goes into the JSON body: no quotes, backslashes or control characters.
re_worker='^[A-Za-z0-9._-]{1,128}$'
# RFC 6750's b64token: needs no escaping inside the double-quoted curl config value it goes in.
re_token='^[A-Za-z0-9._~+/=-]+$'
re_count='^[0-9]{1,6}$'
re_pid='^[0-9]{1,10}$'

# The list, checked URL by URL, trailing slashes dropped, one space between URLs. No arrays
# (see above): words of a string, split with globbing off so a '*' in a URL stays a '*'.
set -f
controllers=''
controller_count=0
# shellcheck disable=SC2086 # splitting the list into its URLs is the point
for c in $controller; do
  [[ $c =~ $re_url ]] ||
    die_usage "<controller> (or EXPO_MONITOR_CONTROLLER) must be an http:// or https:// URL (or several, separated by spaces), got '$c'"
  while :; do
    case $c in
      */) c=${c%/} ;;
      *) break ;;
    esac
  done
  controllers="$controllers${controllers:+ }$c"
  controller_count=$((controller_count + 1))
done
set +f
[ "$controller_count" -gt 0 ] || die_usage "missing <controller> (or EXPO_MONITOR_CONTROLLER)"
[[ $build_id =~ $re_build ]] ||
  die_usage "<build-id> (or EXPO_MONITOR_BUILD_ID) must be 1-128 of A-Z a-z 0-9 . _ - and not start with '.', got '$build_id'"
[[ $worker_id =~ $re_worker ]] ||
  die_usage "<worker-id> (or EXPO_MONITOR_WORKER_ID) must be 1-128 of A-Z a-z 0-9 . _ -, got '$worker_id'"
# The token itself is never printed.
[[ $token =~ $re_token ]] ||
  die_usage "<api-key> (or EXPO_MONITOR_TOKEN / EXPO_MONITOR_TOKEN_FILE) may hold only A-Z a-z 0-9 - . _ ~ + / = (it has other characters, such as quotes, backslashes or spaces)"
positive() { [[ $1 =~ $re_count ]] && [ $((10#$1)) -gt 0 ]; }
positive "$interval" ||
  die_usage "[interval] (or EXPO_MONITOR_INTERVAL_S) must be a positive whole number of seconds, got '$interval'"
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

# Index (0-based) of the controller beats go to, and the URL of that one.
current=0
# Sets `controller` to the controllers' URL number $current.
pick_controller() {
  local i=0 c
  set -f
  for c in $controllers; do
    if [ "$i" -eq "$current" ]; then
      controller=$c
      break
    fi
    i=$((i + 1))
  done
  set +f
}
pick_controller
tmp_root=${TMPDIR:-/tmp}
tmp_root=${tmp_root%/}
progress_file=${EXPO_MONITOR_PROGRESS_FILE:-$tmp_root/expo-worker-$build_id.progress}
path="/api/v1/builds/$build_id/heartbeat"

command -v curl >/dev/null 2>&1 || {
  warn "curl not found on PATH; cannot send heartbeats"
  exit 69
}

# The directories of monitors killed outright: ours (-O), named vm-monitor.<pid>.*, <pid> gone.
# (Directories of versions before 1.1.0, vm-monitor.XXXXXX, carry no pid and are left alone.)
for old in "$tmp_root"/vm-monitor.*.*; do
  if [ -d "$old" ] && [ ! -L "$old" ] && [ -O "$old" ]; then
    old_pid=${old##*/vm-monitor.}
    old_pid=${old_pid%%.*}
    if [[ $old_pid =~ $re_pid ]] && ! kill -0 "$old_pid" 2>/dev/null; then
      rm -rf "$old" 2>/dev/null
    fi
  fi
done

work=''
child=''
# Stops the sleep or curl in flight and reaps it, so nothing outlives the monitor, then removes
# the work directory. Runs on every exit.
cleanup() {
  if [ -n "$child" ]; then
    kill "$child" 2>/dev/null
    wait "$child" 2>/dev/null
    child=''
  fi
  if [ -n "$work" ]; then
    rm -rf "$work"
    work=''
  fi
}
# Cleans up before saying anything: stdout may be a pipe nobody reads any more (SIGHUP).
stop() {
  cleanup
  say "Stopped by signal"
  exit 0
}
# Until `work` holds the new directory, a signal is only noted, then handled right after.
stopping=0
trap 'stopping=1' TERM INT HUP
work=$(mktemp -d "$tmp_root/vm-monitor.$$.XXXXXX") || {
  warn "cannot create a temporary directory in $tmp_root"
  exit 1
}
trap cleanup EXIT
trap stop TERM INT HUP
[ "$stopping" -eq 0 ] || stop

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
      "$controller$path" >"$work/code" 2>"$work/err" &
  child=$!
}

# The first 200 bytes of the answer, on one line, for the log.
answer() {
  head -c 200 "$work/body" 2>/dev/null | tr '\n' ' '
}

say "Starting for build $build_id"
say "Sending heartbeats every ${interval}s to $controllers"
warn "Reading progress from $progress_file"

backoff=1
# Controllers that failed in a row: the backoff waits until each one had its try.
failed=0
while :; do
  read_progress
  : >"$work/body"
  post_heartbeat
  wait_child
  curl_status=$?
  code=$(cat "$work/code" 2>/dev/null)
  retry=0
  switch=0
  if [ "$curl_status" -ne 0 ]; then
    retry=1
    switch=1
    failed=$((failed + 1))
    if [ "$failed" -lt "$controller_count" ]; then
      warn "Heartbeat failed: $(tr '\n' ' ' <"$work/err" 2>/dev/null)(curl exit $curl_status)"
    else
      warn "Heartbeat failed: $(tr '\n' ' ' <"$work/err" 2>/dev/null)(curl exit $curl_status); retrying in ${backoff}s"
    fi
  else
    case $code in
      2??)
        say "Heartbeat sent (progress: $progress%)"
        backoff=1
        failed=0
        ;;
      502 | 503 | 504)
        retry=1
        switch=1
        failed=$((failed + 1))
        if [ "$failed" -lt "$controller_count" ]; then
          warn "Heartbeat failed (HTTP $code). $(answer)"
        else
          warn "Heartbeat failed (HTTP $code); retrying in ${backoff}s. $(answer)"
        fi
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
  if [ "$switch" -eq 1 ] && [ "$controller_count" -gt 1 ]; then
    current=$(((current + 1) % controller_count))
    pick_controller
    warn "Controller unreachable, switching to $controller"
    # Each controller gets its try before any wait.
    [ "$failed" -ge "$controller_count" ] || continue
  fi
  if [ "$retry" -eq 1 ]; then
    failed=0
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
