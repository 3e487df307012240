import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Server } from 'ssh2';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Ssh2Client } from '../../src/sys/ssh2-client.ts';
import type { SshSession } from '../../src/sys/ssh.ts';
import { waitForSsh } from '../../src/health/ssh-ready.ts';
import { BUSY_SLACK_MS, midway } from '../support/busy.ts';
import { freePort, startSshd, type TestSshd } from '../support/sshd.ts';

const client = new Ssh2Client();
/** Generous for a busy machine: a healthy handshake ends the wait as soon as it completes. */
const READY_TIMEOUT_MS = 20_000;
let sshd: TestSshd;
const sessions: SshSession[] = [];

beforeAll(async () => {
  sshd = await startSshd();
});
afterEach(async () => {
  sshd.thaw();
  await Promise.all(sessions.splice(0).map((s) => s.close()));
});
afterAll(async () => {
  await sshd?.stop();
});

async function connect(extra: Partial<Parameters<Ssh2Client['connect']>[0]> = {}): Promise<SshSession> {
  const s = await client.connect({ host: sshd.host, port: sshd.port, username: sshd.user, privateKey: sshd.clientKey, readyTimeoutMs: READY_TIMEOUT_MS, ...extra });
  sessions.push(s);
  return s;
}

describe('Ssh2Client against OpenSSH sshd', () => {
  it('runs commands, streams output and reports exit codes', async () => {
    const s = await connect();
    expect(s.hostKeyFingerprint).toBe(sshd.hostKeyFingerprint);
    const chunks: string[] = [];
    const errChunks: string[] = [];
    const r = await s.exec('echo alive; echo warn >&2; exit 7', { onStdout: (c) => chunks.push(c.toString()), onStderr: (c) => errChunks.push(c.toString()) });
    expect(r).toMatchObject({ exitCode: 7, signal: null, stdout: 'alive\n', stderr: 'warn\n' });
    expect(chunks.join('')).toBe('alive\n');
    expect(errChunks.join('')).toBe('warn\n');
    const df = await s.exec('df -h /');
    expect(df.exitCode).toBe(0);
    expect(df.stdout).toMatch(/^Filesystem/);
  });

  it('streams long output as it comes', async () => {
    const s = await connect();
    const seen: number[] = [];
    const started = Date.now();
    // A second apart when sent: a busy event loop may see the first chunk late, never near the second.
    await s.exec('echo one; sleep 1; echo two', { onStdout: () => seen.push(Date.now() - started) });
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect((seen.at(-1) ?? 0) - (seen[0] ?? 0)).toBeGreaterThan(300);
  });

  it('times out a command with SSH_EXEC_TIMEOUT and keeps the connection usable', async () => {
    const s = await connect();
    await expect(s.exec('sleep 10', { timeoutMs: 300 })).rejects.toMatchObject({ code: 'SSH_EXEC_TIMEOUT' });
    expect((await s.exec('echo still')).stdout).toBe('still\n');
  });

  it('uploads a string and a file with a mode', async () => {
    const s = await connect();
    const target = join(sshd.dir, 'up.sh');
    await s.upload({ data: '#!/bin/sh\necho hi\n' }, target, { mode: 0o755 });
    expect((await s.exec(`${target}`)).stdout).toBe('hi\n');
    const local = join(sshd.dir, 'local.txt');
    writeFileSync(local, 'file body');
    await s.upload({ localPath: local }, join(sshd.dir, 'copy.txt'), { mode: 0o600 });
    expect(readFileSync(join(sshd.dir, 'copy.txt'), 'utf8')).toBe('file body');
    expect((await s.exec(`stat -c %a ${join(sshd.dir, 'copy.txt')}`)).stdout.trim()).toBe('600');
    rmSync(target);
  });

  it('rejects a wrong key at once with SSH_AUTH_REJECTED', async () => {
    const started = Date.now();
    await expect(connect({ privateKey: sshd.wrongKey })).rejects.toMatchObject({ code: 'SSH_AUTH_REJECTED' });
    // At once: not after waiting out the ready timeout.
    expect(Date.now() - started).toBeLessThan(midway(0, READY_TIMEOUT_MS));
  });

  it('reports an unparseable key as SSH_AUTH_REJECTED without echoing it', async () => {
    const err = (await connect({ privateKey: 'SECRET-NOT-A-KEY' }).catch((e: unknown) => e)) as Error & { code: string };
    expect(err.code).toBe('SSH_AUTH_REJECTED');
    expect(err.message).not.toContain('SECRET');
  });

  it('pins host keys: SSH_HOST_KEY_MISMATCH for another key, records on first use', async () => {
    await expect(connect({ hostKey: { kind: 'pinned', fingerprints: ['SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'] } })).rejects.toMatchObject({
      code: 'SSH_HOST_KEY_MISMATCH',
      details: { fingerprint: sshd.hostKeyFingerprint },
    });
    let recorded = '';
    await connect({ hostKey: { kind: 'record', onKey: (fp) => (recorded = fp) } });
    expect(recorded).toBe(sshd.hostKeyFingerprint);
    await connect({ hostKey: { kind: 'pinned', fingerprints: [recorded] } });
  });

  it('a host key mismatch names the presented and the pinned key', async () => {
    const pinned = `SHA256:${'A'.repeat(43)}`;
    const err = (await connect({ hostKey: { kind: 'pinned', fingerprints: [pinned] } }).catch((e: unknown) => e)) as Error & { code: string };
    expect(err.code).toBe('SSH_HOST_KEY_MISMATCH');
    expect(err.message).toContain(`host key ${sshd.hostKeyFingerprint}, not the pinned ${pinned}`);
    expect(err.message).toContain('refused before authenticating');
  });

  it('a server with the wrong host key never sees an authentication attempt', async () => {
    // An ssh2 server that counts authentication requests (and rejects them all).
    let attempts = 0;
    const server = new Server({ hostKeys: [readFileSync(join(sshd.dir, 'host_ed25519'))] }, (conn) => {
      conn.on('authentication', (ctx) => {
        attempts++;
        ctx.reject();
      });
      conn.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as AddressInfo).port;
    try {
      const wrong = await connect({ port, hostKey: { kind: 'pinned', fingerprints: [`SHA256:${'A'.repeat(43)}`] } }).catch((e: unknown) => e);
      expect(wrong).toMatchObject({ code: 'SSH_HOST_KEY_MISMATCH' });
      expect(attempts).toBe(0);
      // The control: with the right pin the client goes on to authenticate.
      const right = await connect({ port, hostKey: { kind: 'pinned', fingerprints: [sshd.hostKeyFingerprint] } }).catch((e: unknown) => e);
      expect(right).toMatchObject({ code: 'SSH_AUTH_REJECTED' });
      expect(attempts).toBeGreaterThan(0);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('reports a closed port as SSH_REFUSED', async () => {
    const port = await freePort();
    await expect(connect({ port })).rejects.toMatchObject({ code: 'SSH_REFUSED' });
  });

  it('reports a hung server (SIGSTOPped sshd) as SSH_TIMEOUT within the ready timeout', async () => {
    sshd.freeze();
    const readyTimeoutMs = 700;
    const started = Date.now();
    await expect(connect({ readyTimeoutMs })).rejects.toMatchObject({ code: 'SSH_TIMEOUT' });
    // Within the given ready timeout, not ssh2's default of 20 s (or never).
    expect(Date.now() - started).toBeLessThan(readyTimeoutMs + BUSY_SLACK_MS);
  });

  it('detects keepalive failure on an open connection and fails a running exec', async () => {
    const keepaliveIntervalMs = 200;
    const keepaliveCountMax = 2;
    const s = await connect({ keepaliveIntervalMs, keepaliveCountMax });
    const running = s.exec('sleep 30').catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 200));
    sshd.freeze();
    const started = Date.now();
    const info = await s.closed;
    expect(info.error).toMatchObject({ code: 'SSH_TIMEOUT' });
    // After the given keepalives went unanswered, not the default 3 × 5 s (or never).
    expect(Date.now() - started).toBeLessThan(keepaliveIntervalMs * (keepaliveCountMax + 1) + BUSY_SLACK_MS);
    expect(await running).toMatchObject({ code: 'SSH_TIMEOUT' });
    await expect(s.exec('echo x')).rejects.toMatchObject({ code: 'SSH_TIMEOUT' });
  });
});

describe('waitForSsh', () => {
  it('polls a refused port until sshd answers', async () => {
    const port = await freePort();
    let calls = 0;
    const ready = await waitForSsh({
      ssh: client,
      resolveHost: async () => '127.0.0.1',
      // The first attempts hit a closed port (a stale address); then the real one.
      connect: { username: sshd.user, privateKey: sshd.clientKey, readyTimeoutMs: READY_TIMEOUT_MS, get port() { return ++calls < 3 ? port : sshd.port; } },
      timeoutS: 10,
      minBackoffMs: 50,
    });
    sessions.push(ready.session);
    expect(ready.attempts).toBe(3);
  });

  it('gives up on a refused port after the bound with an actionable message', async () => {
    const port = await freePort();
    const timeoutS = 1;
    const started = Date.now();
    const err = (await waitForSsh({
      ssh: client,
      resolveHost: async () => '127.0.0.1',
      connect: { username: sshd.user, privateKey: sshd.clientKey, port },
      timeoutS,
      minBackoffMs: 50,
      maxBackoffMs: 200,
    }).catch((e: unknown) => e)) as Error & { code: string };
    expect(err.code).toBe('SSH_REFUSED');
    expect(err.message).toMatch(/connection refused/);
    // It gives up after the bound instead of polling on.
    expect(Date.now() - started).toBeLessThan(timeoutS * 1000 + BUSY_SLACK_MS);
  });

  it('does not retry a rejected key', async () => {
    const timeoutS = 30;
    const started = Date.now();
    let attempts = 0;
    await expect(
      waitForSsh({
        ssh: client,
        resolveHost: async () => (attempts++, '127.0.0.1'),
        connect: { username: sshd.user, privateKey: sshd.wrongKey, port: sshd.port },
        timeoutS,
      }),
    ).rejects.toMatchObject({ code: 'SSH_AUTH_REJECTED' });
    expect(attempts).toBe(1);
    // Ended at once, not after waiting out the bound.
    expect(Date.now() - started).toBeLessThan(midway(0, timeoutS * 1000));
  });

  it('gives up on a frozen server with SSH_TIMEOUT after the bound', async () => {
    sshd.freeze();
    const timeoutS = 1.5;
    const readyTimeoutMs = 500;
    const started = Date.now();
    await expect(
      waitForSsh({
        ssh: client,
        resolveHost: async () => '127.0.0.1',
        connect: { username: sshd.user, privateKey: sshd.clientKey, port: sshd.port, readyTimeoutMs },
        timeoutS,
        minBackoffMs: 50,
      }),
    ).rejects.toMatchObject({ code: 'SSH_TIMEOUT' });
    // It gives up after the bound (its last attempt may start just before it) instead of polling on.
    expect(Date.now() - started).toBeLessThan(timeoutS * 1000 + readyTimeoutMs + BUSY_SLACK_MS);
  });
});
