/**
 * A real OpenSSH sshd for integration tests: its own temp dir with a host key and a client key
 * (ssh-keygen), listening on 127.0.0.1 at a free high port, run in the foreground (`-D -e`).
 * `freeze()` SIGSTOPs it and every per-connection child (a hung server: TCP still accepts, nothing
 * answers); `stop()` kills everything and removes the dir. Inherits process.env like every test
 * process, so the suite's leak check sees a survivor.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

export interface TestSshd {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly user: string;
  readonly dir: string;
  /** The authorized client key (OpenSSH private key text). */
  readonly clientKey: string;
  /** A second key that is not authorized. */
  readonly wrongKey: string;
  /** The server's host key fingerprint, `SHA256:…`. */
  readonly hostKeyFingerprint: string;
  /** SIGSTOP the server and its children. */
  freeze(): void;
  /** SIGCONT them. */
  thaw(): void;
  /** Kills the server and its children, removes the dir. Idempotent. */
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => resolve(typeof addr === 'object' && addr !== null ? addr.port : 0));
    });
  });
}

function keygen(path: string): void {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test', '-f', path], { stdio: 'ignore' });
}

/** Every descendant pid of `pid` (from /proc). */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

function signalAll(pids: number[], signal: NodeJS.Signals): void {
  for (const p of pids) {
    try {
      process.kill(p, signal);
    } catch {
      // gone
    }
  }
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

export async function startSshd(): Promise<TestSshd> {
  mkdirSync('/run/sshd', { recursive: true });
  const dir = mkdtempSync(join(tmpdir(), 'sshd-'));
  keygen(join(dir, 'host_ed25519'));
  keygen(join(dir, 'client'));
  keygen(join(dir, 'wrong'));
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'client.pub')));
  const port = await freePort();
  const user = userInfo().username;
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${join(dir, 'host_ed25519')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      'StrictModes no',
      'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'PermitRootLogin yes',
      'Subsystem sftp internal-sftp',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'], env: process.env });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const pid = child.pid as number;
  const fp = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', join(dir, 'host_ed25519.pub')], { encoding: 'utf8' }).split(' ')[1] as string;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const all = [pid, ...descendants(pid)];
    signalAll(all, 'SIGCONT');
    signalAll(all, 'SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; i < 100 && !(await listening(port)); i++) {
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!(await listening(port))) {
    await stop();
    throw new Error(`sshd did not start: ${stderr}`);
  }
  return {
    host: '127.0.0.1',
    port,
    user,
    dir,
    clientKey: readFileSync(join(dir, 'client'), 'utf8'),
    wrongKey: readFileSync(join(dir, 'wrong'), 'utf8'),
    hostKeyFingerprint: fp,
    freeze: () => signalAll([pid, ...descendants(pid)], 'SIGSTOP'),
    thaw: () => signalAll([pid, ...descendants(pid)], 'SIGCONT'),
    stop,
  };
}
