/**
 * The agent's own small HTTP server, on `metricsAddress` (default `127.0.0.1:9464`): `GET
 * /metrics` (Prometheus text) and `GET /health` (slots, last poll, last error, preflight as
 * JSON; 200 while the agent can take builds or is draining, 503 when its preflight fails or it
 * has stopped). Only the composition root starts it. It serves no secrets, but keep it on a
 * private address all the same.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ExpoError } from '../protocol/errors.ts';
import { http } from '../sys/node-http.ts';
import type { AgentStatus } from './agent.ts';

export interface StatusServerOptions {
  /** `host:port` (`[::1]:9464` for IPv6); port 0 picks a free one. */
  address: string;
  metrics: { contentType: string; render: () => Promise<string> };
  status: () => AgentStatus;
}

export interface StatusServer {
  /** `http://host:port` as bound. */
  readonly url: string;
  close(): Promise<void>;
}

/** Splits `host:port`; throws CFG_INVALID naming `metricsAddress` when it is not one. */
export function parseListenAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(address);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new ExpoError('CFG_INVALID', `metricsAddress: must be host:port (got ${JSON.stringify(address)})`);
  return { host: m[1] ?? m[2]!, port };
}

/** The `/health` body: the daemon's status with times as ISO strings. */
export function healthBody(s: AgentStatus): { ok: boolean; body: Record<string, unknown> } {
  const preflightOk = s.preflight.every((c) => c.ok);
  const ok = preflightOk && s.state !== 'stopped';
  return {
    ok,
    body: {
      status: ok ? 'ok' : 'unhealthy',
      state: s.state,
      slotsTotal: s.slotsTotal,
      slotsBusy: s.slotsBusy,
      runningBuilds: s.runningBuilds,
      lastPollAt: s.lastPollAt === null ? null : new Date(s.lastPollAt).toISOString(),
      lastError: s.lastError,
      preflight: s.preflight.map((c) => ({ name: c.name, ok: c.ok, detail: c.detail })),
    },
  };
}

export async function startStatusServer(o: StatusServerOptions): Promise<StatusServer> {
  const { host, port } = parseListenAddress(o.address);
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    if (path === '/metrics') {
      const text = await o.metrics.render();
      res.writeHead(200, { 'content-type': o.metrics.contentType }).end(text);
      return;
    }
    if (path === '/health') {
      const { ok, body } = healthBody(o.status());
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /health\n');
  };
  const server: Server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`error: ${(err as Error).message}\n`);
    });
  });
  // Scrapers keep connections open; close() must not wait for them.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  const shownHost = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  return {
    url: `http://${shownHost}:${bound.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
