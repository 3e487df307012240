/** The agent's controller client against a real HTTP server: what is retried and what is not. */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { ControllerClient, isAttemptOver } from '../../../src/agent/controller-client.ts';

let close: (() => Promise<void>) | undefined;
afterEach(async () => {
  await close?.();
  close = undefined;
});

async function serve(handler: (req: IncomingMessage, res: ServerResponse, n: number) => void) {
  let n = 0;
  const seen: { url: string; auth: string | undefined; body: string }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen.push({ url: req.url ?? '', auth: req.headers.authorization, body });
      handler(req, res, ++n);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const client = new ControllerClient({ baseUrl: `http://127.0.0.1:${port}/`, apiKey: 'ewk_k', workerId: 'mac-1', retryMinMs: 10, retryMaxMs: 20 });
  close = async () => {
    await client.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };
  return { client, seen, port };
}

const json = (res: ServerResponse, status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));

describe('ControllerClient', () => {
  it('retries 5xx and network trouble, then succeeds', async () => {
    const { client, seen } = await serve((_req, res, n) => (n < 3 ? json(res, 503, { code: 'API_SHUTTING_DOWN', message: 'stopping' }) : json(res, 200, { logBytes: 5 })));
    expect(await client.appendLog('aaaaaaaaaaaaaaaa', 'ewl_lease', 0, 'hello')).toBe(5);
    expect(seen).toHaveLength(3);
    expect(seen[0]).toMatchObject({ url: '/api/v1/builds/aaaaaaaaaaaaaaaa/logs', auth: 'Bearer ewk_k' });
    expect(JSON.parse(seen[0]!.body)).toEqual({ lease: 'ewl_lease', offset: 0, data: 'hello' });
  });

  it('asks for a clone token with the lease, retrying GITHUB_UNAVAILABLE; a 404 (no repository) is an answer', async () => {
    const { client, seen } = await serve((_req, res, n) =>
      n === 1 ? json(res, 503, { code: 'GITHUB_UNAVAILABLE', message: 'no clone token for acme/app' }) : json(res, 200, { token: 'ghs_t0ken', expiresAt: null }),
    );
    expect(await client.checkoutToken('aaaaaaaaaaaaaaaa', 'ewl_lease')).toEqual({ token: 'ghs_t0ken', expiresAt: null });
    expect(seen).toHaveLength(2);
    expect(seen[0]).toMatchObject({ url: '/api/v1/builds/aaaaaaaaaaaaaaaa/checkout-token' });
    expect(JSON.parse(seen[0]!.body)).toEqual({ lease: 'ewl_lease' });
    await close?.();
    const other = await serve((_req, res) => json(res, 404, { code: 'API_NOT_FOUND', message: 'build aaaaaaaaaaaaaaaa has no repository to check out' }));
    await expect(other.client.checkoutToken('aaaaaaaaaaaaaaaa', 'ewl_lease')).rejects.toMatchObject({ code: 'HTTP_STATUS' });
    expect(other.seen).toHaveLength(1);
  });

  it("reports a step's start as a running phase update carrying the step", async () => {
    const { client, seen } = await serve((_req, res) => json(res, 200, { id: 'aaaaaaaaaaaaaaaa', status: 'running' }));
    await client.stepStarted('aaaaaaaaaaaaaaaa', 'ewl_lease', 2);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ url: '/api/v1/builds/aaaaaaaaaaaaaaaa/phase', auth: 'Bearer ewk_k' });
    expect(JSON.parse(seen[0]!.body)).toEqual({ lease: 'ewl_lease', phase: 'running', step: 2 });
  });

  it('never retries a 4xx, and recognises a 409 that ends the attempt', async () => {
    const { client, seen } = await serve((_req, res) => json(res, 409, { code: 'LEASE_STALE', message: 'over' }));
    const err = await client.complete('aaaaaaaaaaaaaaaa', { lease: 'ewl_lease', status: 'succeeded' }).catch((e: unknown) => e);
    expect(isAttemptOver(err)).toBe(true);
    expect(seen).toHaveLength(1);
  });

  it('retries what the error table calls retryable: a request timeout (408) and a proxy\'s 429 or 502', async () => {
    const answers: [number, unknown][] = [
      [408, { code: 'API_REQUEST_TIMEOUT', message: 'slow' }],
      [429, null],
      [502, null],
      [200, { logBytes: 1 }],
    ];
    const { client, seen } = await serve((_req, res, n) => {
      const [status, body] = answers[n - 1]!;
      if (body === null) res.writeHead(status, { 'content-type': 'text/html' }).end('<html>busy</html>');
      else json(res, status, body);
    });
    expect(await client.appendLog('aaaaaaaaaaaaaaaa', 'ewl_lease', 0, 'x')).toBe(1);
    expect(seen).toHaveLength(4);
  });

  it("answers a proxy's 404 page at once (a wrong URL: no retry fixes it)", async () => {
    const { client, seen } = await serve((_req, res) => res.writeHead(404, { 'content-type': 'text/html' }).end('<html>not here</html>'));
    const err = await client.phase('aaaaaaaaaaaaaaaa', 'ewl_l', 'running').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'HTTP_STATUS', details: { status: 404 } });
    expect(seen).toHaveLength(1);
  });

  it('reports an unreachable controller as HTTP_UNREACHABLE after its retries', async () => {
    const { client, port } = await serve((_req, res) => json(res, 200, {}));
    await close!();
    close = undefined;
    const dead = new ControllerClient({ baseUrl: `http://127.0.0.1:${port}`, apiKey: 'k', workerId: 'w', retryMinMs: 5, retryMaxMs: 5 });
    const retries: number[] = [];
    const err = await dead.phase('aaaaaaaaaaaaaaaa', 'ewl_l', 'running', { retries: 2, onRetry: (_e, n) => retries.push(n) }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'HTTP_UNREACHABLE' });
    expect(retries).toEqual([1, 2]);
    void client;
    await dead.close();
  });

  it('answers null for a 204 poll and the claim for a 200, each with the clocks the controller stated', async () => {
    const claim = { build: { id: 'aaaaaaaaaaaaaaaa' }, lease: 'l', buildToken: 't' };
    const clocks = { 'x-expo-heartbeat-timeout-ms': '6000', 'x-expo-poll-wait-max-ms': '3000', 'x-expo-prepare-timeout-ms': '600000' };
    const { client, seen } = await serve((_req, res, n) => (n === 1 ? res.writeHead(204, clocks).end() : json(res, 200, claim)));
    expect(await client.poll({ slotsFree: 1, runningBuilds: [], waitS: 0 })).toEqual({
      claim: null,
      liveness: { heartbeatTimeoutMs: 6000, pollWaitMaxMs: 3000, prepareTimeoutMs: 600_000 },
    });
    // A controller that states nothing (an older one): no clocks, and the agent keeps its config.
    expect(await client.poll({ slotsFree: 1, runningBuilds: [], waitS: 0 })).toEqual({ claim, liveness: null });
    expect(seen[0]!.url).toBe('/api/v1/workers/mac-1/poll');
  });
});
