/**
 * provision.sh on Linux: --dry-run shows every step, the file steps are skipped when already
 * done, and a real run refuses anywhere but macOS. Every plan is made with --root in the test's
 * own directory, so what the host has installed (a /usr/local/bin/vm-monitor.sh, a sudoers grant,
 * its own settings) changes nothing here.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MONITOR, PROVISION, killAll, runScript } from './support.ts';

let dir: string;
/** The image's root for --root: empty, as in a fresh image, unless a test puts files in it. */
let root: string;
let pubkey: string;
let keyLine: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'provision-test-'));
  root = join(dir, 'root');
  mkdirSync(root);
  mkdirSync(join(dir, 'tmp'));
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'agent@test', '-f', join(dir, 'agent_key')], { env: process.env });
  pubkey = join(dir, 'agent_key.pub');
  keyLine = `no-port-forwarding,no-X11-forwarding,no-agent-forwarding ${readFileSync(pubkey, 'utf8').trim()}`;
});
afterEach(async () => {
  await killAll();
  rmSync(dir, { recursive: true, force: true });
});

async function provision(...args: string[]) {
  const r = runScript(PROVISION, args, { TMPDIR: join(dir, 'tmp') });
  const { code } = await r.exited;
  return { code, out: r.stdout(), err: r.stderr() };
}

describe('provision.sh --dry-run', () => {
  it('prints every base-image step and changes nothing', async () => {
    const { code, out } = await provision('--dry-run', '--root', root, '--pubkey', pubkey, '--user', 'builder');
    expect(code).toBe(0);
    const steps = out.split('\n').filter((l) => l.startsWith('==> '));
    expect(steps).toEqual([
      `==> Install vm-monitor.sh as ${root}/usr/local/bin/vm-monitor.sh`,
      '==> Verify curl',
      '==> Enable Remote Login (sshd)',
      "==> Authorize the agent's key for builder",
      '==> Disable sleep, display sleep, screen saver and automatic updates',
    ]);
    expect(out).toMatch(/\+ (sudo )?install -m 0755 \S+\/vm-image\/vm-monitor\.sh \S+\/root\/usr\/local\/bin\/vm-monitor\.sh\n/);
    expect(out).toMatch(/ok: \/\S*curl/);
    expect(out).toMatch(/\+ (sudo )?launchctl load -w \/System\/Library\/LaunchDaemons\/ssh\.plist/);
    expect(out).toContain(`line: ${keyLine}`);
    expect(out).not.toContain('command=');
    expect(out).toMatch(/\+ (sudo )?install -d -m 0700 (-o builder )?\S+\/root\/Users\/builder\/\.ssh\n/);
    expect(out).toMatch(/\+ (sudo )?install -m 0600 (-o builder )?\S+ \S+\/root\/Users\/builder\/\.ssh\/authorized_keys\n/);
    expect(out).toMatch(/\+ (sudo )?pmset -a sleep 0/);
    expect(out).toMatch(/\+ (sudo )?pmset -a displaysleep 0/);
    expect(out).toMatch(/\+ (sudo -u builder )?defaults -currentHost write com\.apple\.screensaver idleTime -int 0/);
    expect(out).toMatch(/\+ (sudo )?softwareupdate --schedule off/);
    expect(out).toContain(`defaults write ${root}/Library/Preferences/com.apple.SoftwareUpdate AutomaticDownload -bool false`);
    expect(out).not.toMatch(/sudoers|shutdown/);
    expect(out.trimEnd().split('\n').at(-1)).toBe('Dry run: nothing was changed.');
    expect(readdirSync(root)).toEqual([]);
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
  });

  it('adds the passwordless-shutdown step with --allow-shutdown, checked by visudo', async () => {
    const { code, out } = await provision('--dry-run', '--root', root, '--allow-shutdown', '--pubkey', pubkey, '--user', 'builder');
    expect(code).toBe(0);
    expect(out).toContain(`==> Allow builder to run /sbin/shutdown without a password (${root}/etc/sudoers.d/expo-worker-shutdown)`);
    expect(out).toContain('    builder ALL=(root) NOPASSWD: /sbin/shutdown');
    expect(out).toMatch(/\+ (sudo )?visudo -c -f \S+/);
    expect(out).toMatch(/\+ (sudo )?install -m 0440 -o root -g wheel \S+ \S+\/root\/etc\/sudoers\.d\/expo-worker-shutdown\n/);
  });

  it('removes a shutdown grant an earlier run left, without --allow-shutdown', async () => {
    mkdirSync(join(root, 'etc', 'sudoers.d'), { recursive: true });
    writeFileSync(join(root, 'etc', 'sudoers.d', 'expo-worker-shutdown'), 'builder ALL=(root) NOPASSWD: /sbin/shutdown\n');
    const { code, out } = await provision('--dry-run', '--root', root, '--pubkey', pubkey, '--user', 'builder');
    expect(code).toBe(0);
    expect(out).toContain(`==> Remove the shutdown grant of an earlier run (${root}/etc/sudoers.d/expo-worker-shutdown)`);
    expect(out).toMatch(/\+ (sudo )?rm -f \S+\/root\/etc\/sudoers\.d\/expo-worker-shutdown\n/);
  });

  it('skips what is already done: the same monitor installed, the key present (--home and --install-dir inside --root)', async () => {
    mkdirSync(join(root, 'opt', 'bin'), { recursive: true });
    copyFileSync(MONITOR, join(root, 'opt', 'bin', 'vm-monitor.sh'));
    mkdirSync(join(root, 'home', 'b', '.ssh'), { recursive: true });
    writeFileSync(join(root, 'home', 'b', '.ssh', 'authorized_keys'), `ssh-ed25519 AAAAother other@host\n${keyLine}\n`);
    const { code, out } = await provision('--dry-run', '--root', root, '--pubkey', pubkey, '--user', 'builder', '--home', '/home/b', '--install-dir', '/opt/bin');
    expect(code).toBe(0);
    expect(out).toMatch(/ok: version \d+\.\d+\.\d+ already installed/);
    expect(out).toContain(`ok: ${join(root, 'home', 'b', '.ssh', 'authorized_keys')} already holds the key`);
    expect(out).not.toContain('vm-monitor.sh\n    +');
    expect(out).not.toMatch(/install -m 0600|install -m 0755/);
  });

  it('replaces an entry of the same key that has other options (such as the seed command=)', async () => {
    mkdirSync(join(root, 'Users', 'builder', '.ssh'), { recursive: true });
    const blob = readFileSync(pubkey, 'utf8').trim();
    writeFileSync(join(root, 'Users', 'builder', '.ssh', 'authorized_keys'), `command="/usr/local/bin/vm-monitor.sh" ${blob}\n`);
    const { out } = await provision('--dry-run', '--root', root, '--pubkey', pubkey, '--user', 'builder');
    expect(out).toContain(`line: ${keyLine}`);
    expect(out).toMatch(/install -m 0600 .*authorized_keys/);
  });
});

describe('provision.sh refuses', () => {
  it.skipIf(process.platform === 'darwin')('a real run anywhere but macOS', async () => {
    const { code, err } = await provision('--pubkey', pubkey, '--user', 'builder');
    expect(code).toBe(1);
    expect(err).toContain('provisions a macOS VM');
  });

  it('--root without --dry-run, or not a directory', async () => {
    const real = runScript(PROVISION, ['--root', root, '--pubkey', pubkey, '--user', 'builder']);
    expect((await real.exited).code).toBe(64);
    expect(real.stderr()).toContain('--root DIR only plans: give --dry-run too');
    expect((await provision('--dry-run', '--root', join(dir, 'nowhere'), '--pubkey', pubkey, '--user', 'builder')).code).toBe(64);
  });

  it('a missing --pubkey, a bad user, root, and a private key', async () => {
    expect((await provision('--dry-run', '--user', 'builder')).code).toBe(64);
    expect((await provision('--dry-run', '--pubkey', pubkey, '--user', 'Bad User')).code).toBe(64);
    expect((await provision('--dry-run', '--pubkey', pubkey, '--user', 'root')).code).toBe(64);
    const priv = await provision('--dry-run', '--pubkey', join(dir, 'agent_key'), '--user', 'builder');
    expect(priv.code).toBe(1);
    expect(priv.err).toContain('private key');
  });
});
