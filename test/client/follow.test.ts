/**
 * `expo-worker logs --follow` on the live log stream, against a real controller listening on
 * 127.0.0.1 reached through a small TCP proxy the test can cut: the log printed byte for byte
 * (`\r`, `\r\n`, multi-byte UTF-8, ANSI escapes) across a dropped connection, with a notice per
 * reconnect on stderr, and an unreachable controller given up on with exit 69.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { logsMain, type CliIo } from '../../src/client/commands.ts';
import { EXIT } from '../../src/client/exit-codes.ts';
import { ADMIN_KEY, startTestController, type PollClaim, type TestController } from '../controller/support.ts';

/** A TCP proxy to `port` whose open connections the test can cut (a network drop), and that can stop listening. */
async function tcpProxy(port: number): Promise<{ url: string; connections: () => number; cut: () => void; badGatewayOnce: () => void; close: () => Promise<void> }> {
  const pairs = new Set<[Socket, Socket]>();
  let total = 0;
  let badGateway = false;
  const clients = new Set<Socket>();
  const server: Server = createServer((client) => {
    total++;
    clients.add(client);
    client.on('close', () => clients.delete(client));
    if (badGateway) {
      // What a proxy in front of a restarting controller answers.
      badGateway = false;
      const page = '<h1>502 Bad Gateway</h1>';
      client.end(`HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\ncontent-length: ${page.length}\r\nconnection: close\r\n\r\n${page}`);
      return;
    }
    const upstream = connect(port, '127.0.0.1');
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port: own } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${own}`,
    connections: () => total,
    badGatewayOnce: () => {
      badGateway = true;
    },
    cut: () => {
      for (const [a, b] of [...pairs]) {
        a.destroy();
        b.destroy();
      }
    },
    close: async () => {
      const closed = new Promise((r) => server.close(r));
      for (const [a, b] of [...pairs]) {
        a.destroy();
        b.destroy();
      }
      for (const client of [...clients]) client.destroy();
      await closed;
    },
  };
}

let c: TestController;
let home: string;
let proxy: Awaited<ReturnType<typeof tcpProxy>>;

beforeEach(async () => {
  c = await startTestController({ realClock: true });
  await c.app.listen({ port: 0, host: '127.0.0.1' });
  proxy = await tcpProxy((c.app.server.address() as { port: number }).port);
  home = mkdtempSync(join(tmpdir(), 'expo-follow-home-'));
});
afterEach(async () => {
  await proxy.close();
  await c.close();
  rmSync(home, { recursive: true, force: true });
});

function io(extra: Partial<CliIo> = {}): CliIo & { out: () => Buffer; err: () => string } {
  const out: Buffer[] = [];
  const err: string[] = [];
  return {
    stdout: (t) => void out.push(Buffer.from(t)),
    stderr: (t) => void err.push(t),
    env: { EXPO_WORKER_URL: proxy.url, EXPO_WORKER_KEY: ADMIN_KEY },
    home,
    followReconnectMs: 20,
    ...extra,
    out: () => Buffer.concat(out),
    err: () => err.join(''),
  };
}

/** Waits (a busy machine may take a while) until `ready` holds. */
async function until(ready: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 30_000; !ready() && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 10));
  expect(ready()).toBe(true);
}

async function runningBuild() {
  const w = await c.enrol('mac-1');
  const b = await c.submit();
  const claim = (await c.poll('mac-1', w.auth)) as PollClaim;
  expect((await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: claim.lease, phase: 'running' })).statusCode).toBe(200);
  let offset = 0;
  return {
    id: b.id,
    append: async (data: string) => {
      const res = await c.post(`/api/v1/builds/${b.id}/logs`, w.auth, { lease: claim.lease, offset, data });
      expect(res.statusCode).toBe(200);
      offset = res.json().logBytes as number;
    },
    complete: async () => expect((await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: claim.lease, status: 'succeeded' })).statusCode).toBe(200),
  };
}

describe('expo-worker logs --follow', () => {
  it('prints the exact bytes across a dropped connection and a proxy 502, saying so on stderr, and exits with the result', async () => {
    const b = await runningBuild();
    const first = 'step 1 \u001b[33mwarn\u001b[0m é\r\n';
    await b.append(first);
    const t = io();
    const following = logsMain([b.id, '--follow'], t);
    await until(() => t.out().length === Buffer.byteLength(first));
    proxy.badGatewayOnce();
    proxy.cut();
    await b.append('progress 10%\rprogress 90%\r🚀 naïve ✓\n');
    await b.append('done\n');
    await b.complete();
    expect(await following).toBe(EXIT.ok);
    expect(t.out().equals(await c.store.readLog(b.id, 0))).toBe(true);
    expect(proxy.connections()).toBeGreaterThanOrEqual(3);
    expect(t.err()).toContain('502');
    expect(t.err()).toContain(`[expo-worker] build ${b.id}: log stream lost`);
    expect(t.err()).toContain(`reconnecting from byte ${Buffer.byteLength(first)}`);
    expect(t.err()).toContain(`[expo-worker] build ${b.id}: running on mac-1`);
  });

  it('gives up on a controller gone for good after followGiveUpMs, as unreachable (69)', async () => {
    const b = await runningBuild();
    await b.append('hello\n');
    const t = io({ followGiveUpMs: 300 });
    const following = logsMain([b.id, '--follow'], t);
    await until(() => t.out().toString() === 'hello\n');
    await proxy.close();
    expect(await following).toBe(EXIT.unreachable);
    expect(t.err()).toContain(`expo-worker logs: lost the log stream of build ${b.id} at ${proxy.url} and could not get it back`);
  });
});
