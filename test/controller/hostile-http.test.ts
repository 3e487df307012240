/**
 * Hostile HTTP against a listening controller, over raw sockets (what a browser or client
 * library would never send) and undici: encoded and absolute-form request targets, dot
 * segments, double slashes, `*`, huge and malformed URLs, broken request lines and headers.
 * Every answer is `{code, message}` with a documented code and the status that code carries,
 * never a 5xx, and no route is reached without the key it needs.
 */
import { connect } from 'node:net';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/protocol/errors.ts';
import { ROUTES } from '../../src/protocol/routes.ts';
import { bearer, startTestController, type TestController } from './support.ts';

let c: TestController;
let port: number;
let buildId: string;
let workerKey: string;

beforeAll(async () => {
  c = await startTestController();
  await c.app.listen({ port: 0, host: '127.0.0.1' });
  port = (c.app.server.address() as { port: number }).port;
  workerKey = (await c.enrol('mac-a')).apiKey;
  buildId = (await c.submit()).id;
});
afterAll(async () => {
  await c?.close();
});

interface RawAnswer {
  status: number;
  headers: string;
  body: string;
}

/**
 * Writes `raw` as is and reads the answer until the server closes (`Connection: close`, or a
 * refused request). `halfClose` ends our side after writing (Node then drops a request whose
 * answer is not ready, so only for a request that can never complete).
 */
function rawRequest(raw: string, halfClose = false): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => (halfClose ? socket.end(raw) : socket.write(raw)));
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const head = text.slice(0, Math.max(0, text.indexOf('\r\n\r\n')));
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve({ status: m ? Number(m[1]) : 0, headers: head, body: text.slice(head.length + 4) });
    });
  });
}

const get = (target: string, headers: Record<string, string> = {}) =>
  rawRequest(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);

const ADMIN = { Authorization: `Bearer ${'test-admin-key-0123456789'}` };

/** The shape every error must have: a documented code whose status is the one answered. */
function expectError(a: RawAnswer, status: number, code: string): void {
  expect(a.status, `${a.headers}\n${a.body}`).toBe(status);
  const body = JSON.parse(a.body) as { code: string; message: string };
  expect(body.code).toBe(code);
  expect(ERROR_CODES[body.code as keyof typeof ERROR_CODES]?.status).toBe(status);
  expect(body.message.length).toBeGreaterThan(0);
}

describe('request targets the router decodes are authorized like the decoded path', () => {
  it.each([
    ['a percent-encoded path', '/%61pi/v1/builds'],
    ['a percent-encoded path in every letter', '/%61%70%69/%76%31/%62%75%69%6c%64%73'],
    ['an absolute-form target', 'http://127.0.0.1/api/v1/builds'],
    ['an absolute-form target naming another host', 'http://evil.example/api/v1/builds'],
  ])('%s is refused 401 without a key, never 500', async (_what, target) => {
    expectError(await get(target), 401, 'AUTH_MISSING');
  });

  it('a percent-encoded path is the same route: 200 with the admin key, 403 with a worker key', async () => {
    const asAdmin = await get('/%61pi/v1/builds', ADMIN);
    expect(asAdmin.status, asAdmin.body).toBe(200);
    expect((JSON.parse(asAdmin.body) as { builds: { id: string }[] }).builds.map((b) => b.id)).toContain(buildId);
    expectError(await get('/%61pi/v1/builds', { Authorization: `Bearer ${workerKey}` }), 403, 'AUTH_FORBIDDEN');
  });

  it('an absolute-form target is the same route: 200 with the admin key, 403 with a worker key', async () => {
    expect((await get(`http://127.0.0.1/api/v1/builds/${buildId}`, ADMIN)).status).toBe(200);
    expectError(await get(`http://127.0.0.1/api/v1/builds/${buildId}`, { Authorization: `Bearer ${workerKey}` }), 403, 'AUTH_FORBIDDEN');
  });

  it('an encoded POST reaches cancel only with the admin key', async () => {
    const id = (await c.submit()).id;
    const post = (headers: string) =>
      rawRequest(`POST /%61pi/v1/builds/${id}/%63ancel HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n${headers}\r\n`);
    expectError(await post(''), 401, 'AUTH_MISSING');
    expectError(await post(`Authorization: Bearer ${workerKey}\r\n`), 403, 'AUTH_FORBIDDEN');
    expect((await c.get(id)).status).toBe('queued');
    expect((await post(`Authorization: Bearer ${ADMIN.Authorization.slice(7)}\r\n`)).status).toBe(200);
    expect((await c.get(id)).status).toBe('cancelled');
  });

  it('a HEAD of an API route needs the key too', async () => {
    const a = await rawRequest('HEAD /%61pi/v1/builds HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(a.status).toBe(401);
  });

  it('the public routes stay public however they are spelled', async () => {
    expect((await get('/%68ealth')).status).toBe(200);
    expect((await get('http://127.0.0.1/metrics')).status).toBe(200);
  });
});

describe('odd targets are answered 4xx in the error shape', () => {
  it.each([
    ['a double-encoded path', '/%2561pi/v1/builds', 404, 'API_NOT_FOUND'],
    ['an encoded slash', '/api%2Fv1/builds', 404, 'API_NOT_FOUND'],
    ['a leading double slash', '//api/v1/builds', 404, 'API_NOT_FOUND'],
    ['a dot segment out of a public route', '/health/../api/v1/builds', 404, 'API_NOT_FOUND'],
    ['a dot segment inside the API', '/api/v1/workers/../builds', 404, 'API_NOT_FOUND'],
    ['an asterisk target', '*', 404, 'API_NOT_FOUND'],
    ['an encoded slash in an id', `/api/v1/builds/${'a'.repeat(8)}%2F${'a'.repeat(7)}`, 400, 'API_BAD_REQUEST'],
    ['a percent escape that is not UTF-8', '/api/v1/builds/%ff%fe', 400, 'API_BAD_REQUEST'],
    ['a truncated percent escape', '/api/v1/builds/%', 400, 'API_BAD_REQUEST'],
    ['an encoded null byte in an id', '/api/v1/builds/aaaaaaaaaaaaaaa%00', 400, 'API_BAD_REQUEST'],
    ['a path segment past the router limit', `/api/v1/builds/${'a'.repeat(150)}`, 414, 'API_URI_TOO_LONG'],
  ])('%s (with the admin key)', async (_what, target, status, code) => {
    expectError(await get(target, ADMIN), status, code);
  });

  it('an encoded null byte without a key is 401, not a route reached', async () => {
    expectError(await get('/api/v1/builds/aaaaaaaaaaaaaaa%00'), 401, 'AUTH_MISSING');
  });

  it('OPTIONS * is answered 404 in the error shape', async () => {
    expectError(await rawRequest('OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), 404, 'API_NOT_FOUND');
  });

  it('a not-found message does not echo a huge URL back whole', async () => {
    const a = await get(`/nothing/${'b'.repeat(8000)}`, ADMIN);
    expectError(a, 404, 'API_NOT_FOUND');
    expect(a.body.length).toBeLessThan(1000);
  });
});

describe('requests too malformed to reach a route get {code, message}', () => {
  it.each([
    ['a garbage request line', 'GARBAGE\r\n\r\n', 400, 'API_BAD_REQUEST'],
    ['an unknown HTTP version', 'GET / HTTP/9.9\r\nHost: x\r\n\r\n', 400, 'API_BAD_REQUEST'],
    ['a raw null byte in the target', 'GET /api/v1/builds/\0 HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'API_BAD_REQUEST'],
    ['a raw space in the target', 'GET /api/v1/ builds HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'API_BAD_REQUEST'],
    ['a header line with no colon', 'GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n', 400, 'API_BAD_REQUEST'],
    ['a non-numeric Content-Length', 'POST /api/v1/builds HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n', 400, 'API_BAD_REQUEST'],
    ['both Transfer-Encoding and Content-Length', 'POST /api/v1/builds HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc', 400, 'API_BAD_REQUEST'],
    ['an oversized header', `GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'API_HEADERS_TOO_LARGE'],
    ['a huge URL', `GET /api/v1/builds/${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 431, 'API_HEADERS_TOO_LARGE'],
  ])('%s', async (_what, raw, status, code) => {
    expectError(await rawRequest(raw), status, code);
  });

  it('a declared body longer than what is sent is refused, not hung on', async () => {
    // The client half-closes after 2 of 10 bytes: the request is incomplete, never a 5xx.
    const a = await rawRequest(`POST /api/v1/builds HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10\r\n${'Authorization: ' + ADMIN.Authorization}\r\n\r\n{}`, true);
    expect(a.status === 0 || (a.status >= 400 && a.status < 500), `${a.status} ${a.body}`).toBe(true);
  });
});

describe('through undici', () => {
  it('a percent-encoded path and a dot segment get the same answers as over a raw socket', async () => {
    const base = `http://127.0.0.1:${port}`;
    const encoded = await request(`${base}/%61pi/v1/builds`);
    expect(encoded.statusCode).toBe(401);
    expect(((await encoded.body.json()) as { code: string }).code).toBe('AUTH_MISSING');
    const withKey = await request(`${base}/%61pi/v1/builds`, { headers: bearer('test-admin-key-0123456789') });
    expect(withKey.statusCode).toBe(200);
    await withKey.body.dump();
    const bad = await request(`${base}/api/v1/builds/%c0%af`, { headers: bearer('test-admin-key-0123456789') });
    expect(bad.statusCode).toBe(400);
    expect(((await bad.body.json()) as { code: string }).code).toBe('API_BAD_REQUEST');
  });
});

/** Every (method, path) the app serves, read from its route tree (so a new route is walked too). */
function routesOf(tree: string): { method: string; path: string }[] {
  const out: { method: string; path: string }[] = [];
  const stack: { depth: number; path: string }[] = [];
  for (const line of tree.split('\n')) {
    const m = /^(.*?)(\/\S*) \(([A-Z, ]+)\)$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length;
    while (stack.length > 0 && stack.at(-1)!.depth >= depth) stack.pop();
    const path = `${stack.at(-1)?.path ?? ''}${m[2]!}`;
    stack.push({ depth, path });
    for (const method of m[3]!.split(', ')) out.push({ method, path });
  }
  return out;
}

describe('every route, walked with bad input by every kind of caller', () => {
  let w: TestController;
  let id: string;
  let finishedId: string;
  let auth: Record<string, Record<string, string>>;
  beforeAll(async () => {
    // With a webhook secret, so the walk reaches the webhook's own checks (without one it
    // answers every delivery 503 WEBHOOK_NOT_CONFIGURED by design: github-webhook.test.ts).
    w = await startTestController({ githubSecret: 'hostile-walk-github-secret' });
    const worker = await w.enrol('mac-a');
    id = (await w.submit()).id;
    const claim = (await w.poll('mac-a', worker.auth))!;
    // The live log stream of an active build answers for as long as the build runs: walked on a finished one.
    finishedId = (await w.submit()).id;
    await w.post(`/api/v1/builds/${finishedId}/cancel`, w.admin, {});
    auth = { none: {}, admin: w.admin, worker: worker.auth, token: bearer(claim.buildToken) };
  });
  afterAll(async () => {
    await w?.close();
  });

  const variants: [string, Record<string, string>, string | undefined][] = [
    ['no body', {}, undefined],
    ['an empty JSON body', { 'content-type': 'application/json' }, ''],
    ['bad JSON', { 'content-type': 'application/json' }, '{"lease": '],
    ['a JSON array', { 'content-type': 'application/json' }, '[1, 2]'],
    ['a JSON string', { 'content-type': 'application/json' }, '"x"'],
    ['wrong types', { 'content-type': 'application/json' }, JSON.stringify({ lease: 5, offset: 'x', data: [], steps: {}, status: 1, id: null, slotsFree: -1, runningBuilds: 'x' })],
    ['a text body', { 'content-type': 'text/plain' }, 'hello'],
    ['a form body', { 'content-type': 'application/x-www-form-urlencoded' }, 'a=1&b=2'],
    ['a bogus content type', { 'content-type': '\u00ff/\u00ff; charset=nope' }, '{}'],
    ['a huge JSON body', { 'content-type': 'application/json' }, JSON.stringify({ pad: 'x'.repeat(5 * 1024 * 1024) })],
  ];

  it('never answers 5xx, and every error is {code, message} with a documented code and its status', async () => {
    const routes = routesOf(w.app.printRoutes({ commonPrefix: false })).filter((r) => r.method !== 'HEAD');
    expect(routes.length).toBeGreaterThan(15);
    const bad: string[] = [];
    for (const r of routes) {
      const url = r.path.replace(':id', r.path.startsWith('/api/v1/workers') ? 'mac-a' : r.path === ROUTES.streamLog.path ? finishedId : id).replace(':name', 'a.txt').replace('*', 'a.txt');
      for (const [who, headers] of Object.entries(auth)) {
        for (const [what, extra, payload] of variants) {
          const res = await w.app.inject({ method: r.method as 'GET', url, headers: { ...headers, ...extra }, ...(payload === undefined ? {} : { payload }) });
          const where = `${r.method} ${r.path} as ${who} with ${what}: ${res.statusCode} ${res.body.slice(0, 120)}`;
          if (res.statusCode >= 500) bad.push(where);
          else if (res.statusCode >= 400) {
            // The dashboard's pages answer errors as HTML: its code and message in `#error`.
            const page = /^text\/html/.test(String(res.headers['content-type'])) ? /<p id="error"><code>([A-Z_]+)<\/code>: ([^<]+)<\/p>/.exec(res.body) : null;
            const body = (page ? { code: page[1], message: page[2] } : JSON.parse(res.body)) as { code?: string; message?: string };
            const known = body.code !== undefined && Object.hasOwn(ERROR_CODES, body.code) ? ERROR_CODES[body.code as keyof typeof ERROR_CODES] : undefined;
            if (known?.status !== res.statusCode || !body.message) bad.push(where);
          }
        }
      }
    }
    expect(bad).toEqual([]);
  });
});
