/**
 * `expo-worker install` / `uninstall` as real child processes. Linux cannot run launchctl, so the
 * plist printed by --dry-run is checked with a real plist parser (python3's plistlib), every key,
 * and the printed commands are checked word for word.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AGENT_NODE_FLAGS } from '../../src/agent/node-flags.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
const CLI = join(ROOT, 'src', 'cli.ts');
const LABEL = 'com.expo-worker.agent';
const PLIST = `/Library/LaunchDaemons/${LABEL}.plist`;

let dir: string;
let config: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'install-test-'));
  config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({ vmName: 'base', vmUser: 'admin', vmSshKey: '~/.ssh/k', controllerUrl: 'http://127.0.0.1:3000', apiKey: 'ewk_x' }));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function cli(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { env: process.env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, out, err };
}

/** The plist in --dry-run output, parsed by python3's plistlib. */
async function parsePlist(out: string): Promise<Record<string, unknown>> {
  const start = out.indexOf('<?xml');
  const end = out.indexOf('</plist>') + '</plist>'.length;
  expect(start).toBeGreaterThanOrEqual(0);
  const child = execFile('python3', ['-c', 'import json,plistlib,sys; print(json.dumps(plistlib.loads(sys.stdin.buffer.read())))'], { env: process.env });
  const done = new Promise<string>((resolve, reject) => {
    let text = '';
    child.stdout?.on('data', (c: Buffer) => (text += c.toString('utf8')));
    child.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`plistlib exited ${code}`))));
  });
  child.stdin?.end(out.slice(start, end));
  return JSON.parse(await done) as Record<string, unknown>;
}

const commands = (out: string): string[] => out.slice(out.indexOf('# commands:')).split('\n').slice(1).filter((l) => l !== '');

describe('expo-worker install --dry-run', () => {
  it('prints a plist that a real parser reads, with every key, and the exact commands', async () => {
    const r = await cli('install', '--dry-run', '--config', config, '--user', 'builder');
    expect(r.code).toBe(0);
    expect(await parsePlist(r.out)).toEqual({
      Label: LABEL,
      ProgramArguments: [process.execPath, ...AGENT_NODE_FLAGS, join(ROOT, 'dist', 'src', 'cli.js'), 'agent', '--config', config],
      UserName: 'builder',
      WorkingDirectory: '/Users/builder',
      EnvironmentVariables: { PATH: '/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin', HOME: '/Users/builder', USER: 'builder' },
      RunAtLoad: true,
      KeepAlive: { SuccessfulExit: false },
      ThrottleInterval: 10,
      ExitTimeOut: 3600,
      ProcessType: 'Interactive',
      StandardOutPath: '/Library/Logs/expo-worker/agent.log',
      StandardErrorPath: '/Library/Logs/expo-worker/agent.err.log',
    });
    expect(commands(r.out)).toEqual([
      '$ /bin/mkdir -p /Library/Logs/expo-worker',
      '$ /usr/sbin/chown builder /Library/Logs/expo-worker',
      `# write ${PLIST} (mode 0644, owner root), the plist above`,
      `$ /usr/bin/plutil -lint ${PLIST}`,
      `$ /bin/launchctl bootout system/${LABEL}    # only if \`launchctl print system/${LABEL}\` finds it loaded`,
      `$ /bin/launchctl enable system/${LABEL}`,
      `$ /bin/launchctl bootstrap system ${PLIST}`,
    ]);
  });

  it('honours --plist-path, --log-dir, --node and --exit-timeout, resolves a relative config, and escapes XML', async () => {
    const odd = join(dir, 'a & <b> "c".json');
    writeFileSync(odd, '{}');
    const plist = join(dir, 'out.plist');
    const r = await cli('install', '--dry-run', '--config', 'a & <b> "c".json', '--user', 'ci.runner', '--plist-path', plist, '--log-dir', join(dir, 'logs'), '--node', process.execPath, '--exit-timeout', '7200');
    expect(r.code).toBe(0);
    expect(r.out).toContain('a &amp; &lt;b&gt; &quot;c&quot;.json');
    const parsed = await parsePlist(r.out);
    expect((parsed.ProgramArguments as string[]).at(-1)).toBe(odd);
    expect(parsed).toMatchObject({ UserName: 'ci.runner', ExitTimeOut: 7200, StandardOutPath: join(dir, 'logs', 'agent.log'), StandardErrorPath: join(dir, 'logs', 'agent.err.log') });
    expect(commands(r.out)).toContain(`$ /bin/launchctl bootstrap system ${plist}`);
  });

  it('prints --help and exits 0', async () => {
    const r = await cli('install', '--help');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Usage: expo-worker install \[options\]/);
    for (const flag of ['--config', '--user', '--dry-run', '--plist-path', '--log-dir', '--node', '--exit-timeout']) expect(r.out).toContain(flag);
  });
});

describe('expo-worker install refuses', () => {
  it('a missing config file and a bad user name, naming both at once (exit 64)', async () => {
    const r = await cli('install', '--dry-run', '--config', join(dir, 'missing.json'), '--user', 'not a user');
    expect(r.code).toBe(64);
    expect(r.err).toContain('2 problems');
    expect(r.err).toContain(`--config: cannot read ${join(dir, 'missing.json')} (ENOENT)`);
    expect(r.err).toContain("--user: 'not a user' is not a user name");
    expect(r.out).toBe('');
  });

  it('root as the user, a config that is not JSON, a bad exit timeout and an unknown flag', async () => {
    writeFileSync(join(dir, 'bad.json'), '{nope');
    const r = await cli('install', '--dry-run', '--config', join(dir, 'bad.json'), '--user', 'root', '--exit-timeout', '1.5');
    expect(r.code).toBe(64);
    expect(r.err).toContain('not root');
    expect(r.err).toContain('is not valid JSON');
    expect(r.err).toContain("--exit-timeout: '1.5'");
    const unknown = await cli('install', '--dry-run', '--bogus');
    expect(unknown.code).toBe(64);
    expect(unknown.err).toContain("Unknown option '--bogus'");
  });

  // On a Mac these would really install or uninstall; they are for the Linux hosts that run the suite.
  it.skipIf(process.platform === 'darwin')('a real install off macOS, before touching anything', async () => {
    const r = await cli('install', '--config', config, '--user', 'builder', '--plist-path', join(dir, 'x.plist'));
    expect(r.code).toBe(1);
    expect(r.err).toContain('runs only on macOS');
    expect(r.out).toBe('');
  });
});

describe('expo-worker uninstall', () => {
  it('--dry-run prints bootout then removal', async () => {
    const r = await cli('uninstall', '--dry-run');
    expect(r.code).toBe(0);
    expect(commands(r.out)).toEqual([
      `$ /bin/launchctl bootout system/${LABEL}    # only if \`launchctl print system/${LABEL}\` finds it loaded`,
      `$ /bin/rm -f ${PLIST}`,
    ]);
  });

  it.skipIf(process.platform === 'darwin')('refuses a real run off macOS, and prints --help', async () => {
    const r = await cli('uninstall');
    expect(r.code).toBe(1);
    expect(r.err).toContain('runs only on macOS');
    const help = await cli('uninstall', '--help');
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/^Usage: expo-worker uninstall/);
  });

  it('is listed in the CLI help with install', async () => {
    const r = await cli('--help');
    expect(r.out).toMatch(/^ {2}install +install the agent as a macOS LaunchDaemon/m);
    expect(r.out).toMatch(/^ {2}uninstall +stop the agent's LaunchDaemon/m);
  });
});
