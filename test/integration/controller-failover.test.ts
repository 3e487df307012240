/**
 * Failover against the real controller: one controller (two would need PostgreSQL) listening on
 * 127.0.0.1 behind two TCP proxies, A and B, which stand for two controllers on one database.
 * The agent's client is given both URLs; a test cuts A in the middle of a build, or cuts only
 * the answers coming back through it (the request lands, the answer is lost), and the build
 * must finish through B with its log byte-exact and its completion recorded.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ControllerClient } from '../../src/agent/controller-client.ts';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import { startTestController, type TestController } from '../controller/support.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * A proxy that passes requests on but, once `loseAnswers` is on, destroys the connection when
 * the controller's answer starts: the call took effect and the agent never hears of it.
 * `onRequest` is told when a request's first bytes go through.
 */
async function startAnswerCutter(targetPort: number, onRequest: () => void = () => undefined) {
  const sockets = new Set<Socket>();
  const state = { loseAnswers: false, lost: 0 };
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => s.destroy());
    }
    client.on('data', (d) => {
      onRequest();
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (state.loseAnswers) {
        state.lost++;
        client.destroy();
        upstream.destroy();
      } else client.write(d);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  const close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return { url, state, close };
}

async function controller(): Promise<{ c: TestController; port: number; workerKey: string }> {
  const c = await startTestController({ realClock: true });
  cleanups.push(() => c.close());
  const address = await c.app.listen({ host: '127.0.0.1', port: 0 });
  const worker = await c.enrol('mac-1');
  return { c, port: Number(new URL(address).port), workerKey: worker.apiKey };
}

async function proxy(port: number): Promise<TcpProxy> {
  const p = await startTcpProxy(port);
  cleanups.push(() => p.close());
  return p;
}

function client(urls: string[], workerKey: string) {
  const switches: [string, string][] = [];
  let firstSwitch: (() => void) | undefined;
  const switched = new Promise<void>((r) => (firstSwitch = r));
  const onSwitch = (from: string, to: string) => {
    switches.push([from, to]);
    firstSwitch!();
  };
  const c = new ControllerClient({ baseUrl: urls, apiKey: workerKey, workerId: 'mac-1', retryMinMs: 20, retryMaxMs: 200, onSwitch });
  cleanups.push(() => c.close());
  return { client: c, switches, switched };
}

async function log(c: TestController, id: string): Promise<Buffer> {
  const res = await c.app.inject({ method: ROUTES.readLog.method, url: pathOf(ROUTES.readLog, { id }), headers: c.admin });
  expect(res.statusCode).toBe(200);
  return res.rawPayload;
}

const POLL = { slotsFree: 1, runningBuilds: [], waitS: 0 };

describe('several controllers behind one database (one controller, two proxies)', () => {
  it('finishes a build through B when A is cut mid-build, even an append whose answer A lost, with the whole log byte-exact', async () => {
    const { c, port, workerKey } = await controller();
    const a = await startAnswerCutter(port);
    cleanups.push(a.close);
    const b = await proxy(port);
    const { client: agent, switches } = client([a.url, b.url], workerKey);
    const { id } = await c.submit();

    const { claim } = await agent.poll(POLL);
    expect(claim?.build.id).toBe(id);
    const lease = claim!.lease;
    await agent.phase(id, lease, 'preparing');
    await agent.phase(id, lease, 'running');
    const chunks = ['step 1: héllo\n', 'step 2: 日本語 ✓\n', 'step 3: done\n'];
    let offset = await agent.appendLog(id, lease, 0, chunks[0]!);
    expect(switches).toEqual([]);

    // A passes the append on and loses its answer: the controller has the bytes, the agent
    // does not know; it must send them again through B, not drop them or count them twice.
    a.state.loseAnswers = true;
    offset = await agent.appendLog(id, lease, offset, chunks[1]!);
    expect(a.state.lost).toBe(1);
    expect(switches).toEqual([[a.url, b.url]]);
    // A is gone altogether now; the rest goes through B.
    await a.close();
    offset = await agent.appendLog(id, lease, offset, chunks[2]!);
    expect(offset).toBe(Buffer.byteLength(chunks.join('')));
    expect(await agent.complete(id, { lease, status: 'succeeded' })).toMatchObject({ status: 'succeeded' });

    expect(await c.get(id)).toMatchObject({ status: 'succeeded', logBytes: offset });
    expect((await log(c, id)).equals(Buffer.from(chunks.join('')))).toBe(true);
    expect(switches).toEqual([[a.url, b.url]]);
  });

  it('re-sends a long poll cut with A to B, where a new build wakes it', async () => {
    const { c, port, workerKey } = await controller();
    let cutA: (() => void) | undefined;
    const pollReachedA = new Promise<void>((r) => (cutA = r));
    const a = await startAnswerCutter(port, () => cutA!());
    cleanups.push(a.close);
    const b = await proxy(port);
    const { client: agent, switches, switched } = client([a.url, b.url], workerKey);
    // A long wait: a build claimed by this poll woke it; a timed-out poll answers with no claim.
    const poll = agent.poll({ ...POLL, waitS: 20 });
    await pollReachedA;
    await a.close();
    // The submission waits for the switch, so the claim cannot be handed to the poll A held.
    await switched;
    const { id } = await c.submit();
    const { claim } = await poll;
    expect(claim?.build.id).toBe(id);
    expect(switches).toEqual([[a.url, b.url]]);
  });

  it('starts on [dead, live], and comes back round to A when B dies later', async () => {
    const { c, port, workerKey } = await controller();
    const a = await proxy(port);
    const b = await proxy(port);
    await a.cut();
    const { client: agent, switches } = client([a.url, b.url], workerKey);
    const { id } = await c.submit();
    const { claim } = await agent.poll(POLL);
    expect(claim?.build.id).toBe(id);
    expect(switches).toEqual([[a.url, b.url]]);

    await a.restore();
    await b.cut();
    await agent.phase(id, claim!.lease, 'preparing');
    expect(switches).toEqual([[a.url, b.url], [b.url, a.url]]);
    expect(await c.get(id)).toMatchObject({ status: 'preparing' });
  });
});
