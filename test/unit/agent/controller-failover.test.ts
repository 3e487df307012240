/**
 * The agent's controller client with several controllers, against real HTTP servers on
 * 127.0.0.1: when it moves to the next one, when it does not, and that the first move through
 * the list never waits for the backoff.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { ControllerClient, RawBody, type ControllerClientOptions } from '../../../src/agent/controller-client.ts';

const BUILD = 'aaaaaaaaaaaaaaaa';
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Served {
  url: string;
  seen: string[];
  close: () => Promise<void>;
}

/** A server answering request n (1-based) with `handler`; it records each request's path. */
async function serve(handler: (req: IncomingMessage, res: ServerResponse, n: number) => void): Promise<Served> {
  const seen: string[] = [];
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      seen.push(req.url ?? '');
      handler(req, res, seen.length);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };
  cleanups.push(close);
  return { url, seen, close };
}

/** The URL of a port nothing listens on (a server was there a moment ago). */
async function deadUrl(): Promise<string> {
  const s = await serve((_q, res) => res.end());
  await s.close();
  return s.url;
}

const json = (res: ServerResponse, status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));

function client(urls: string[], extra: Partial<ControllerClientOptions> = {}) {
  const switches: [string, string][] = [];
  const c = new ControllerClient({
    baseUrl: urls,
    apiKey: 'ewk_k',
    workerId: 'mac-1',
    // A backoff no test would outlast: a call that waited for it would time the test out.
    retryMinMs: 600_000,
    retryMaxMs: 600_000,
    onSwitch: (from, to) => switches.push([from, to]),
    ...extra,
  });
  cleanups.push(() => c.close());
  return { c, switches };
}

describe('ControllerClient with several controllers', () => {
  it('starts fine on [dead, live]: moves to the live one at once, without backoff, and stays there', async () => {
    const dead = await deadUrl();
    const live = await serve((_q, res) => json(res, 200, { logBytes: 5 }));
    const { c, switches } = client([dead, `${live.url}/`]);
    expect(await c.appendLog(BUILD, 'ewl_l', 0, 'hello')).toBe(5);
    expect(switches).toEqual([[dead, live.url]]);
    expect(c.baseUrl).toBe(live.url);
    expect(await c.appendLog(BUILD, 'ewl_l', 5, 'again')).toBe(5);
    expect(live.seen).toHaveLength(2);
    expect(switches).toHaveLength(1);
  });

  it('moves on a 502, 503 or 504 answer, round-robin back to the first', async () => {
    const a = await serve((_q, res, n) => (n === 1 ? json(res, 503, { code: 'API_SHUTTING_DOWN', message: 'stopping' }) : json(res, 200, { status: 'running' })));
    const b = await serve((_q, res, n) => (n === 1 ? res.writeHead(502, { 'content-type': 'text/html' }).end('<html>bad gateway</html>') : json(res, 504, null)));
    const { c, switches } = client([a.url, b.url]);
    await c.phase(BUILD, 'ewl_l', 'running', { retries: 0 }).catch(() => undefined);
    // A said 503 (→ B), B said 502 (→ A): every controller failed in a row, so the call failed.
    expect(switches).toEqual([[a.url, b.url], [b.url, a.url]]);
    await c.phase(BUILD, 'ewl_l', 'running', { retries: 0 });
    expect([a.seen.length, b.seen.length]).toEqual([2, 1]);
  });

  it('backs off only once every controller failed in a row, then goes round again', async () => {
    const a = await serve((_q, res) => json(res, 503, { code: 'API_SHUTTING_DOWN', message: 'stopping' }));
    const b = await serve((_q, res, n) => (n === 1 ? json(res, 503, { code: 'API_SHUTTING_DOWN', message: 'stopping' }) : json(res, 200, { logBytes: 3 })));
    const retries: number[] = [];
    const { c } = client([a.url, b.url], { retryMinMs: 10, retryMaxMs: 10 });
    expect(await c.appendLog(BUILD, 'ewl_l', 0, 'abc', { retries: 3, onRetry: (_e, n) => retries.push(n) })).toBe(3);
    // One backoff (after A and B both said 503), then A again (503) and B (200).
    expect(retries).toEqual([1]);
    expect([a.seen.length, b.seen.length]).toEqual([2, 2]);
  });

  it('stays on a controller that answers 500 or a 4xx: another would answer the same', async () => {
    const a = await serve((_q, res, n) => (n === 1 ? json(res, 500, { code: 'API_INTERNAL', message: 'oops' }) : json(res, 409, { code: 'LEASE_STALE', message: 'over' })));
    const b = await serve((_q, res) => json(res, 200, {}));
    const { c, switches } = client([a.url, b.url], { retryMinMs: 5, retryMaxMs: 5 });
    await expect(c.phase(BUILD, 'ewl_l', 'running')).rejects.toMatchObject({ code: 'HTTP_STATUS', details: { status: 409 } });
    expect(a.seen).toHaveLength(2);
    expect(b.seen).toHaveLength(0);
    expect(switches).toEqual([]);
  });

  it('switches once when several requests in flight lose the same controller', async () => {
    const dead = await deadUrl();
    const live = await serve((_q, res) => json(res, 200, { logBytes: 1 }));
    const { c, switches } = client([dead, live.url]);
    await Promise.all([c.appendLog(BUILD, 'ewl_l', 0, 'x'), c.appendLog('bbbbbbbbbbbbbbbb', 'ewl_m', 0, 'y'), c.phase(BUILD, 'ewl_l', 'running')]);
    expect(switches).toEqual([[dead, live.url]]);
    expect(live.seen).toHaveLength(3);
  });

  it('re-sends a long poll cut by its controller to the next one', async () => {
    const claim = { build: { id: BUILD }, lease: 'ewl_l', buildToken: 'ewb_t' };
    // A holds the poll and dies (its connections destroyed); B answers with the claim.
    let holding: (() => void) | undefined;
    const held = new Promise<void>((r) => (holding = r));
    const a = await serve(() => holding!());
    const b = await serve((_q, res) => json(res, 200, claim));
    const { c, switches } = client([a.url, b.url]);
    const poll = c.poll({ slotsFree: 1, runningBuilds: [], waitS: 20 });
    await held;
    await a.close();
    expect((await poll).claim).toEqual(claim);
    expect(switches).toEqual([[a.url, b.url]]);
    expect(b.seen).toEqual(['/api/v1/workers/mac-1/poll']);
  });

  it('retries a log append whose answer was cut mid-way (it may or may not have landed) instead of taking it for acknowledged', async () => {
    // The regression: a 200 whose body never arrived was read as an empty answer, and the
    // append counted as done with no word from the controller.
    const only = await serve((_q, res, n) => {
      if (n === 1) {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
        res.write('{"logBy');
        setImmediate(() => res.destroy());
      } else json(res, 200, { logBytes: 5 });
    });
    const { c } = client([only.url], { retryMinMs: 5, retryMaxMs: 5 });
    expect(await c.appendLog(BUILD, 'ewl_l', 0, 'hello')).toBe(5);
    expect(only.seen).toHaveLength(2);
  });

  it('sends an artifact once (a stream cannot be re-read) but moves on for the next call', async () => {
    const dead = await deadUrl();
    const live = await serve((_q, res) => json(res, 201, { sizeBytes: 3, sha256: 'x' }));
    const { c, switches } = client([dead, live.url]);
    await expect(c.uploadArtifact(BUILD, 'ewl_l', 'a.txt', new RawBody(Readable.from([Buffer.from('abc')]), 3))).rejects.toMatchObject({ code: 'HTTP_UNREACHABLE' });
    expect(switches).toEqual([[dead, live.url]]);
    expect(await c.uploadArtifact(BUILD, 'ewl_l', 'a.txt', new RawBody(Readable.from([Buffer.from('abc')]), 3))).toEqual({ sizeBytes: 3, sha256: 'x' });
  });

  it('refuses an empty list', () => {
    expect(() => new ControllerClient({ baseUrl: [], apiKey: 'k', workerId: 'w' })).toThrow(/at least one controller/);
  });
});
