#!/bin/bash
# provision.sh — prepares a Tart base VM (macOS) for expo-worker builds. Run it inside the VM as
# the build user (it uses sudo where it must) or as root with --user.
#
#   provision.sh --pubkey FILE [--user NAME] [--home DIR] [--monitor PATH] [--install-dir DIR]
#                [--allow-shutdown] [--dry-run [--root DIR]]
#
# Steps, each checked before it changes anything, so a second run changes nothing:
#   1. install vm-monitor.sh (default: the one next to this script) as <install-dir>/vm-monitor.sh
#   2. verify curl
#   3. enable Remote Login (sshd)
#   4. put the agent's public key in the build user's ~/.ssh/authorized_keys, restricted
#   5. no sleep, no display sleep, no screen saver, no automatic updates
#   6. only with --allow-shutdown: passwordless sudo for /sbin/shutdown alone; without it, a
#      grant left by an earlier run is removed
# --dry-run prints each command instead of running it (checks that only read still run).
# --root DIR (with --dry-run) plans against the files under DIR instead of / — the installed
# monitor, the user's authorized_keys, the sudoers grant, the update preferences — and consults
# nothing of the running system (no dscl, pmset, launchctl, defaults, softwareupdate), so an empty
# DIR shows every step a fresh image needs. The tests use it to stay independent of the host.
#
# Stays within macOS's bash 3.2 (no arrays, no ${x,,}, no mapfile).

set -u

me=${0##*/}
here=$(cd "$(dirname "$0")" && pwd) || exit 1

dry_run=0
allow_shutdown=0
user=${SUDO_USER:-$(id -un)}
home=''
monitor_src=$here/vm-monitor.sh
install_dir=/usr/local/bin
pubkey_file=''
root=''
sudoers_file=/etc/sudoers.d/expo-worker-shutdown
update_prefs=/Library/Preferences/com.apple.SoftwareUpdate
changed=0

usage() {
  cat <<EOF
Usage: $me --pubkey FILE [--user NAME] [--home DIR] [--monitor PATH] [--install-dir DIR]
       [--allow-shutdown] [--dry-run [--root DIR]]

  --pubkey FILE      the agent's SSH public key (one line: ssh-ed25519 AAAA… comment)
  --user NAME        the build user whose authorized_keys get the key (default: $user)
  --home DIR         that user's home (default: from the directory service, else /Users/NAME)
  --monitor PATH     the vm-monitor.sh to install (default: next to this script)
  --install-dir DIR  where to install it (default: /usr/local/bin)
  --allow-shutdown   let the build user run 'sudo /sbin/shutdown' without a password
  --dry-run          print the commands instead of running them
  --root DIR         with --dry-run: plan against the files under DIR instead of /, and read
                     no setting of the running system (an empty DIR: every step is shown)
EOF
}
die() {
  printf '%s: %s\n' "$me" "$*" >&2
  exit 1
}
die_usage() {
  printf '%s: %s\n\n' "$me" "$1" >&2
  usage >&2
  exit 64
}

while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry_run=1 ;;
    --allow-shutdown) allow_shutdown=1 ;;
    --user | --home | --monitor | --install-dir | --pubkey | --root)
      [ $# -ge 2 ] || die_usage "$1 needs a value"
      case $1 in
        --user) user=$2 ;;
        --home) home=$2 ;;
        --monitor) monitor_src=$2 ;;
        --install-dir) install_dir=$2 ;;
        --pubkey) pubkey_file=$2 ;;
        --root) root=$2 ;;
      esac
      shift
      ;;
    --help | -h) usage; exit 0 ;;
    *) die_usage "unknown argument '$1'" ;;
  esac
  shift
done

re_user='^[a-z_][a-z0-9_.-]{0,31}$'
[[ $user =~ $re_user ]] || die_usage "--user must match $re_user, got '$user'"
[ "$user" != root ] || die_usage "--user must be the build user, not root"
[ -n "$pubkey_file" ] || die_usage "--pubkey FILE is required"
if [ -n "$root" ]; then
  [ "$dry_run" -eq 1 ] || die_usage "--root DIR only plans: give --dry-run too"
  [ -d "$root" ] || die_usage "--root must be a directory, got '$root'"
  root=$(cd "$root" && pwd) || die "cannot enter $root"
  [ "$root" != / ] || root=''
fi
[ -r "$pubkey_file" ] || die "cannot read the public key $pubkey_file"
[ -r "$monitor_src" ] || die "cannot read $monitor_src (give its path with --monitor)"
bash -n "$monitor_src" || die "$monitor_src is not a valid bash script"
if [ "$dry_run" -eq 0 ] && [ "$(uname -s)" != Darwin ]; then
  die "this provisions a macOS VM; on $(uname -s) only --dry-run is possible"
fi

pubkey=''
IFS= read -r pubkey <"$pubkey_file" || [ -n "$pubkey" ] || die "$pubkey_file is empty"
pubkey=${pubkey%$'\r'}
case $pubkey in
  *PRIVATE*) die "$pubkey_file is a private key; give the .pub file" ;;
  ssh-ed25519\ * | ssh-rsa\ * | ecdsa-sha2-*\ * | sk-ssh-ed25519@openssh.com\ * | sk-ecdsa-sha2-*\ *) ;;
  *) die "$pubkey_file does not look like an OpenSSH public key (ssh-ed25519 AAAA…)" ;;
esac
# The key's base64 blob identifies it whatever its options or comment.
blob=$(printf '%s\n' "$pubkey" | awk '{print $2}')
[ -n "$blob" ] || die "$pubkey_file has no key material"

if [ -z "$home" ]; then
  if [ -z "$root" ] && command -v dscl >/dev/null 2>&1; then
    home=$(dscl . -read "/Users/$user" NFSHomeDirectory 2>/dev/null | awk '{print $2}')
  fi
  [ -n "$home" ] || home=/Users/$user
fi
# Every file the steps read or write, under --root when given.
install_dir=$root$install_dir
home=$root$home
sudoers_file=$root$sudoers_file
update_prefs=$root$update_prefs

# Root runs privileged commands itself; anyone else through sudo.
if [ "$(id -u)" -eq 0 ]; then as_root=''; else as_root=sudo; fi

step() { printf '==> %s\n' "$*"; }
ok() { printf '    ok: %s\n' "$*"; }

# Prints a command, shell-quoted, then runs it unless --dry-run.
run() {
  printf '    +'
  printf ' %q' "$@"
  printf '\n'
  changed=1
  [ "$dry_run" -eq 1 ] || "$@" || die "failed: $*"
}
run_root() {
  if [ -n "$as_root" ]; then run sudo "$@"; else run "$@"; fi
}
# Runs a command as the build user (its files, its per-user defaults).
run_user() {
  if [ "$(id -un)" = "$user" ]; then run "$@"; else run sudo -u "$user" "$@"; fi
}
# Reads a setting without changing anything; quiet and harmless on a host that lacks the tool.
# Under --root the running system is not the one planned for: nothing is read, all is to do.
probe() {
  [ -z "$root" ] || return 1
  "$@" 2>/dev/null
}
probe_root() {
  if [ -n "$as_root" ]; then probe sudo -n "$@"; else probe "$@"; fi
}
probe_user() {
  if [ "$(id -un)" = "$user" ]; then probe "$@"; else probe sudo -n -u "$user" "$@"; fi
}

# 1. The monitor.
step "Install vm-monitor.sh as $install_dir/vm-monitor.sh"
version=$(sed -n 's/^VM_MONITOR_VERSION=//p' "$monitor_src" | head -n 1)
if cmp -s "$monitor_src" "$install_dir/vm-monitor.sh"; then
  ok "version $version already installed"
else
  [ -d "$install_dir" ] || run_root mkdir -p "$install_dir"
  run_root install -m 0755 "$monitor_src" "$install_dir/vm-monitor.sh"
fi

# 2. curl (macOS ships /usr/bin/curl; the monitor needs nothing else).
step "Verify curl"
if curl_path=$(command -v curl); then
  ok "$curl_path"
else
  [ "$dry_run" -eq 1 ] || die "curl is missing: install it (brew install curl) and run again"
  printf '    missing: install it with brew install curl\n'
fi

# 3. Remote Login. `systemsetup -setremotelogin` needs Full Disk Access for the terminal on
# recent macOS; loading sshd's launchd job directly does the same without it.
step "Enable Remote Login (sshd)"
if probe_root launchctl print system/com.openssh.sshd >/dev/null; then
  ok "Remote Login is on (com.openssh.sshd is loaded)"
else
  run_root launchctl load -w /System/Library/LaunchDaemons/ssh.plist
fi

# 4. The agent's key. No command="/usr/local/bin/vm-monitor.sh" restriction on it: a forced
# command replaces whatever the client asks to run, so the agent's health checks (echo alive,
# df -h /), the monitor's launch with its arguments and every build step would all run the
# monitor instead. The VM is a throwaway clone reachable only from its host, the key is per
# worker, and forwarding is off; that is the boundary.
step "Authorize the agent's key for $user"
key_line="no-port-forwarding,no-X11-forwarding,no-agent-forwarding $pubkey"
auth_keys=$home/.ssh/authorized_keys
if [ -f "$auth_keys" ] && grep -qxF "$key_line" "$auth_keys"; then
  ok "$auth_keys already holds the key"
else
  tmp_keys=$(mktemp "${TMPDIR:-/tmp}/expo-worker-keys.XXXXXX") || die "mktemp failed"
  # Keep every other entry; an entry of the same key with other options is replaced.
  if [ -f "$auth_keys" ]; then grep -vF "$blob" "$auth_keys" >"$tmp_keys"; fi
  printf '%s\n' "$key_line" >>"$tmp_keys"
  printf '    line: %s\n' "$key_line"
  if [ "$(id -un)" = "$user" ]; then
    run install -d -m 0700 "$home/.ssh"
    run install -m 0600 "$tmp_keys" "$auth_keys"
  else
    run_root install -d -m 0700 -o "$user" "$home/.ssh"
    run_root install -m 0600 -o "$user" "$tmp_keys" "$auth_keys"
  fi
  rm -f "$tmp_keys"
fi

# 5. Nothing may pause a build: sleep, display sleep, screen saver, update installs.
step "Disable sleep, display sleep, screen saver and automatic updates"
pm=$(probe pmset -g)
for setting in sleep displaysleep; do
  if printf '%s\n' "$pm" | awk -v k="$setting" '$1 == k && $2 == "0" { found = 1 } END { exit !found }'; then
    ok "$setting is 0"
  else
    run_root pmset -a "$setting" 0
  fi
done
if [ "$(probe_user defaults -currentHost read com.apple.screensaver idleTime)" = 0 ]; then
  ok "screen saver idle time is 0"
else
  run_user defaults -currentHost write com.apple.screensaver idleTime -int 0
fi
case $(probe_root softwareupdate --schedule) in
  *"is off"*) ok "automatic update checks are off" ;;
  *) run_root softwareupdate --schedule off ;;
esac
for key in AutomaticDownload AutomaticallyInstallMacOSUpdates; do
  if [ "$(probe defaults read "$update_prefs" "$key")" = 0 ]; then
    ok "$key is off"
  else
    run_root defaults write "$update_prefs" "$key" -bool false
  fi
done

# 6. Shutdown rights, only when asked: a build (or the agent) may then power the VM off from
# inside with `sudo /sbin/shutdown -h now`, and nothing else without a password.
sudoers_line="$user ALL=(root) NOPASSWD: /sbin/shutdown"
if [ "$allow_shutdown" -eq 1 ]; then
  step "Allow $user to run /sbin/shutdown without a password ($sudoers_file)"
  if [ -n "$root" ]; then current=$(cat "$sudoers_file" 2>/dev/null); else current=$(probe_root cat "$sudoers_file"); fi
  if [ "$current" = "$sudoers_line" ]; then
    ok "$sudoers_file already grants it"
  else
    tmp_sudoers=$(mktemp "${TMPDIR:-/tmp}/expo-worker-sudoers.XXXXXX") || die "mktemp failed"
    printf '%s\n' "$sudoers_line" >"$tmp_sudoers"
    printf '    %s\n' "$sudoers_line"
    # visudo checks the syntax first: a broken sudoers file would lock out sudo altogether.
    run_root visudo -c -f "$tmp_sudoers"
    run_root install -m 0440 -o root -g wheel "$tmp_sudoers" "$sudoers_file"
    rm -f "$tmp_sudoers"
  fi
elif [ -e "$sudoers_file" ]; then
  step "Remove the shutdown grant of an earlier run ($sudoers_file)"
  run_root rm -f "$sudoers_file"
fi

if [ "$changed" -eq 0 ]; then
  printf 'Nothing to change: the VM is already provisioned.\n'
elif [ "$dry_run" -eq 1 ]; then
  printf 'Dry run: nothing was changed.\n'
else
  printf "Provisioned. Check it from the host: ssh -i KEY %s@\$(tart ip VM) 'echo alive'\n" "$user"
fi
