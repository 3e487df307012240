/**
 * `POST /webhooks/github` on a real app and a real SQLite database: deliveries built from
 * octokit's example payloads (`@octokit/webhooks-examples`), signed with octokit's `sign`.
 */
import { createRequire } from 'node:module';
import { Writable } from 'node:stream';
import { sign } from '@octokit/webhooks-methods';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/sys/logger.ts';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import { startTestController, type TestController } from './support.ts';
import { WEBHOOK_READS_AT_ONCE } from '../../src/controller/routes/github.ts';

interface Definition {
  name: string;
  examples: Record<string, unknown>[];
}
const EXAMPLES = createRequire(import.meta.url)('@octokit/webhooks-examples') as Definition[];
const example = (name: string): Record<string, unknown> => EXAMPLES.find((d) => d.name === name)!.examples[0]!;

const SECRET = 'webhook-test-secret-0123456789';
const URL_ = pathOf(ROUTES.githubWebhook, {});
const DELIVERY = '72d3162e-cc78-11e3-81ab-4c9367dc0958';

let c: TestController | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

interface Delivery {
  event?: string;
  id?: string;
  body: string | Buffer;
  /** The X-Hub-Signature-256 header; default octokit's signature of the body under SECRET. */
  signature?: string | null;
  contentType?: string;
  headers?: Record<string, string>;
}

async function deliver(ctl: TestController, d: Delivery) {
  const signature = d.signature === undefined ? await sign(SECRET, d.body.toString()) : d.signature;
  return ctl.app.inject({
    method: 'POST',
    url: URL_,
    headers: {
      'content-type': d.contentType ?? 'application/json',
      'user-agent': 'GitHub-Hookshot/abc123',
      ...(d.event === undefined ? {} : { 'x-github-event': d.event }),
      'x-github-delivery': d.id ?? DELIVERY,
      ...(signature === null ? {} : { 'x-hub-signature-256': signature }),
      ...d.headers,
    },
    payload: d.body,
  });
}

const push = () => JSON.stringify(example('push'));

/** A controller logger whose lines the test reads back, parsed. */
const captured = (level: 'info' | 'debug' = 'info') => {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { lines, logger: createLogger('test', level, sink) };
};

describe('POST /webhooks/github', () => {
  it('answers a signed ping 200 {ok: true} and records nothing', async () => {
    c = await startTestController({ githubSecret: SECRET });
    const res = await deliver(c, { event: 'ping', body: JSON.stringify(example('ping')) });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({ ok: true });
    expect(await c.store.listDeliveries(10)).toEqual([]);
  });

  it('accepts a signed push with 202 and records it, ignored: no project for its repository', async () => {
    c = await startTestController({ githubSecret: SECRET });
    const res = await deliver(c, { event: 'push', body: push() });
    expect(res.statusCode, res.body).toBe(202);
    expect(res.json()).toEqual({ accepted: true, delivery: DELIVERY });
    expect(await c.store.listDeliveries(10)).toEqual([
      { id: DELIVERY, event: 'push', action: null, repository: 'Codertocat/Hello-World', receivedAt: c.clock.now, outcome: 'ignored', reason: 'no project for Codertocat/Hello-World', work: null, builds: [] },
    ]);
  });

  it('records the action of an event that has one, and the delivery id lower-cased', async () => {
    c = await startTestController({ githubSecret: SECRET });
    const pr = example('pull_request');
    const res = await deliver(c, { event: 'pull_request', id: DELIVERY.toUpperCase(), body: JSON.stringify(pr) });
    expect(res.statusCode, res.body).toBe(202);
    expect(res.json()).toEqual({ accepted: true, delivery: DELIVERY });
    const [d] = await c.store.listDeliveries(10);
    expect(d).toMatchObject({ id: DELIVERY, event: 'pull_request', action: pr.action, repository: (pr.repository as { full_name: string }).full_name });
  });

  it('accepts an example of every event GitHub documents', async () => {
    c = await startTestController({ githubSecret: SECRET });
    const events = EXAMPLES.filter((d) => d.name !== 'ping');
    for (const [i, def] of events.entries()) {
      const id = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
      const res = await deliver(c, { event: def.name, id, body: JSON.stringify(def.examples[0]) });
      expect(res.statusCode, `${def.name}: ${res.body}`).toBe(202);
    }
    expect((await c.store.listDeliveries(1000)).length).toBe(events.length);
  });

  it('answers a redelivery 202 duplicate and keeps the one record', async () => {
    c = await startTestController({ githubSecret: SECRET });
    const body = push();
    expect((await deliver(c, { event: 'push', body })).statusCode).toBe(202);
    const before = await c.store.listDeliveries(10);
    c.clock.now += 60_000;
    const again = await deliver(c, { event: 'push', body });
    expect(again.statusCode, again.body).toBe(202);
    expect(again.json()).toEqual({ accepted: true, delivery: DELIVERY, duplicate: true });
    expect(await c.store.listDeliveries(10)).toEqual(before);
  });

  it('records one of two concurrent deliveries of one id and calls the other a duplicate', async () => {
    c = await startTestController({ githubSecret: SECRET });
    const body = push();
    const answers = await Promise.all([deliver(c, { event: 'push', body }), deliver(c, { event: 'push', body })]);
    expect(answers.map((a) => a.statusCode)).toEqual([202, 202]);
    expect(answers.map((a) => (a.json() as { duplicate?: boolean }).duplicate === true).sort()).toEqual([false, true]);
    expect((await c.store.listDeliveries(10)).length).toBe(1);
  });

  it('takes application/json with a charset parameter', async () => {
    c = await startTestController({ githubSecret: SECRET });
    const res = await deliver(c, { event: 'push', body: push(), contentType: 'application/json; charset=utf-8' });
    expect(res.statusCode, res.body).toBe(202);
  });

  describe('refuses with 401 WEBHOOK_SIGNATURE and records nothing', () => {
    const cases: [string, (body: string) => Promise<Partial<Delivery>>][] = [
      ['a missing signature', async () => ({ signature: null })],
      ['a wrong signature', async (body) => ({ signature: await sign('not-the-secret-0123456789', body) })],
      ['a truncated signature', async (body) => ({ signature: (await sign(SECRET, body)).slice(0, 40) })],
      ['a signature without its sha256= prefix', async (body) => ({ signature: (await sign(SECRET, body)).slice('sha256='.length) })],
      [
        'a SHA-1 signature only (X-Hub-Signature)',
        async (body) => {
          const { createHmac } = await import('node:crypto');
          return { signature: null, headers: { 'x-hub-signature': `sha1=${createHmac('sha1', SECRET).update(body).digest('hex')}` } };
        },
      ],
      ['a SHA-1 signature in the SHA-256 header', async (body) => ({ signature: `sha1=${(await sign(SECRET, body)).slice(7, 47)}` })],
      ['a body changed after signing', async (body) => ({ signature: await sign(SECRET, body), body: body.replace('Hello-World', 'Hello-Worle') })],
      ['a Bearer admin key instead of a signature', async () => ({ signature: null, headers: { authorization: `Bearer ${'test-admin-key-0123456789'}` } })],
    ];
    it.each(cases)('%s', async (_name, make) => {
      c = await startTestController({ githubSecret: SECRET });
      const body = push();
      const res = await deliver(c, { event: 'push', body, ...(await make(body)) });
      expect(res.statusCode, res.body).toBe(401);
      expect(res.json()).toMatchObject({ code: 'WEBHOOK_SIGNATURE' });
      expect(await c.store.listDeliveries(10)).toEqual([]);
    });
  });

  it('is signed, not keyed: a valid signature is enough, with or without a Bearer key', async () => {
    c = await startTestController({ githubSecret: SECRET });
    const res = await deliver(c, { event: 'push', body: push(), headers: { authorization: 'Bearer ewk_nonsense' } });
    expect(res.statusCode, res.body).toBe(202);
  });

  it('without a secret configured refuses every delivery with 503 WEBHOOK_NOT_CONFIGURED, signed or not', async () => {
    c = await startTestController();
    for (const signature of [undefined, null]) {
      const res = await deliver(c, { event: 'push', body: push(), signature });
      expect(res.statusCode, res.body).toBe(503);
      expect(res.json()).toMatchObject({ code: 'WEBHOOK_NOT_CONFIGURED' });
    }
    const ping = await deliver(c, { event: 'ping', body: '{}' });
    expect(ping.statusCode).toBe(503);
    expect(await c.store.listDeliveries(10)).toEqual([]);
  });

  it('answers malformed JSON with a valid signature 400 API_BAD_REQUEST, and a JSON non-object too', async () => {
    c = await startTestController({ githubSecret: SECRET });
    for (const body of ['{"ref": "refs/heads/main",', '[1, 2]', '"push"', 'null']) {
      const res = await deliver(c, { event: 'push', body });
      expect(res.statusCode, body).toBe(400);
      expect(res.json()).toMatchObject({ code: 'API_BAD_REQUEST' });
    }
    expect(await c.store.listDeliveries(10)).toEqual([]);
  });

  it('answers a body over 25 MB 413 API_BODY_TOO_LARGE, and takes one just under the cap', async () => {
    c = await startTestController({ githubSecret: SECRET });
    const cap = 25 * 1024 * 1024;
    const pad = (total: number) => {
      const head = '{"ref":"refs/heads/main","repository":{"full_name":"octo/app"},"pad":"';
      return `${head}${'x'.repeat(total - head.length - 2)}"}`;
    };
    const over = await deliver(c, { event: 'push', body: pad(cap + 1), signature: `sha256=${'0'.repeat(64)}` });
    expect(over.statusCode).toBe(413);
    expect(over.json()).toMatchObject({ code: 'API_BODY_TOO_LARGE' });
    const under = await deliver(c, { event: 'push', body: pad(cap) });
    expect(under.statusCode, under.body.slice(0, 200)).toBe(202);
    expect(await c.store.listDeliveries(10)).toMatchObject([{ repository: 'octo/app' }]);
  });

  it('answers a bad or missing delivery id or event 400 API_BAD_REQUEST (after the signature holds)', async () => {
    c = await startTestController({ githubSecret: SECRET });
    for (const d of [{ id: 'not-a-guid' }, { id: `${DELIVERY}0` }, { id: '' }, { event: 'Push' }, { event: undefined }]) {
      const res = await deliver(c, { event: 'push', body: push(), ...d });
      expect(res.statusCode, JSON.stringify(d)).toBe(400);
      expect(res.json()).toMatchObject({ code: 'API_BAD_REQUEST' });
    }
    // Unsigned, the same request is told only that the signature is missing.
    const unsigned = await deliver(c, { event: 'push', id: 'not-a-guid', body: push(), signature: null });
    expect(unsigned.statusCode).toBe(401);
    expect(await c.store.listDeliveries(10)).toEqual([]);
  });

  it('refuses a form-encoded delivery with 415: only application/json is taken', async () => {
    c = await startTestController({ githubSecret: SECRET });
    const body = `payload=${encodeURIComponent(push())}`;
    const res = await deliver(c, { event: 'push', body, contentType: 'application/x-www-form-urlencoded' });
    expect(res.statusCode).toBe(415);
    expect(res.json()).toMatchObject({ code: 'API_UNSUPPORTED_MEDIA_TYPE' });
    expect(await c.store.listDeliveries(10)).toEqual([]);
  });

  it('logs an accepted delivery at info with its id, event and repository, and never the secret', async () => {
    const { lines: logged, logger } = captured('debug');
    c = await startTestController({ githubSecret: SECRET, logger });
    await deliver(c, { event: 'push', body: push() });
    await deliver(c, { event: 'push', body: push(), signature: await sign('not-the-secret-0123456789', push()) });
    expect(logged).toContainEqual(
      expect.objectContaining({ level: 30, delivery: DELIVERY, event: 'push', repository: 'Codertocat/Hello-World', msg: 'webhook delivery ignored: no project for Codertocat/Hello-World' }),
    );
    expect(JSON.stringify(logged)).not.toContain(SECRET);
  });

  it('lists the recorded deliveries newest first to the admin, limit honoured', async () => {
    c = await startTestController({ githubSecret: SECRET });
    await deliver(c, { event: 'push', body: push() });
    c.clock.now += 1000;
    const second = '00000000-0000-4000-8000-000000000002';
    await deliver(c, { event: 'issues', id: second, body: JSON.stringify(example('issues')) });
    const list = (query = '') => c!.app.inject({ method: 'GET', url: `${pathOf(ROUTES.listDeliveries, {})}${query}`, headers: c!.admin });
    const all = await list();
    expect(all.statusCode, all.body).toBe(200);
    expect(all.json()).toEqual({
      deliveries: [
        expect.objectContaining({ id: second, event: 'issues', outcome: 'ignored', receivedAt: new Date(c.clock.now).toISOString() }),
        { id: DELIVERY, event: 'push', action: null, repository: 'Codertocat/Hello-World', receivedAt: new Date(c.clock.now - 1000).toISOString(), outcome: 'ignored', reason: 'no project for Codertocat/Hello-World', builds: [] },
      ],
    });
    expect((await list('?limit=1')).json()).toMatchObject({ deliveries: [{ id: second }] });
    expect((await list('?limit=0')).statusCode).toBe(400);
  });

  it('prunes recorded deliveries with the builds, after the retention days', async () => {
    c = await startTestController({ githubSecret: SECRET });
    await deliver(c, { event: 'push', body: push() });
    c.clock.now += 20 * 24 * 3600_000;
    const fresh = '00000000-0000-4000-8000-00000000beef';
    await deliver(c, { event: 'push', id: fresh, body: push() });
    c.clock.now += 11 * 24 * 3600_000;
    const prune = (body: object) => c!.app.inject({ method: 'POST', url: pathOf(ROUTES.prune, {}), headers: c!.admin, payload: body });
    const dry = await prune({ dryRun: true });
    expect(dry.json()).toMatchObject({ dryRun: true, webhookDeliveries: 1 });
    expect((await c.store.listDeliveries(10)).length).toBe(2);
    const real = await prune({});
    expect(real.json()).toMatchObject({ dryRun: false, olderThanDays: 30, webhookDeliveries: 1 });
    expect((await c.store.listDeliveries(10)).map((d) => d.id)).toEqual([fresh]);
    // The scheduled run prunes them too.
    c.clock.now += 30 * 24 * 3600_000;
    await c.retention.runScheduled();
    expect(await c.store.listDeliveries(10)).toEqual([]);
  });
});

describe('POST /webhooks/github against senders without the secret', () => {
  it('logs repeated refusals of an unconfigured controller once per interval, never as errors', async () => {
    const { lines, logger } = captured();
    c = await startTestController({ logger });
    for (let i = 0; i < 5; i++) expect((await deliver(c, { event: 'push', body: push() })).statusCode).toBe(503);
    expect(lines.filter((l) => (l.level as number) >= 50)).toEqual([]);
    expect(lines.filter((l) => l.code === 'WEBHOOK_NOT_CONFIGURED')).toHaveLength(1);
  });

  /** A raw HTTP/1.1 request on its own socket: headers now, the body (if any) only as the test says. */
  const openRequest = async (port: number, headers: Record<string, string>) => {
    const { connect } = await import('node:net');
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    socket.on('error', () => {});
    const head = Object.entries({ host: '127.0.0.1', ...headers }).map(([k, v]) => `${k}: ${v}`).join('\r\n');
    socket.write(`POST ${URL_} HTTP/1.1\r\n${head}\r\n\r\n`);
    const answered = new Promise<string>((resolve) => socket.once('close', () => resolve(answer)).once('end', () => resolve(answer)));
    return { socket, answered };
  };

  /** Listens, and fills every slot of the webhook with a sender whose body trickles (a wrong signature, sent whole never). */
  const trickleInEverySlot = async (ctl: TestController) => {
    const address = await ctl.app.listen({ port: 0, host: '127.0.0.1' });
    const port = Number(new URL(address).port);
    const slow = [];
    for (let i = 0; i < WEBHOOK_READS_AT_ONCE; i++) {
      const r = await openRequest(port, {
        'content-type': 'application/json',
        'content-length': '1000000',
        'x-hub-signature-256': `sha256=${'0'.repeat(64)}`,
        'x-github-event': 'push',
        'x-github-delivery': DELIVERY,
      });
      r.socket.write('{"a":');
      slow.push(r);
    }
    return { address, slow };
  };

  /** A signed push over real HTTP. */
  const deliverOverHttp = async (address: string) => {
    const body = push();
    return fetch(address + URL_, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-hub-signature-256': await sign(SECRET, body), 'x-github-event': 'push', 'x-github-delivery': DELIVERY },
      body,
    });
  };

  it('refuses a delivery without a well-formed signature before reading its body', async () => {
    c = await startTestController({ githubSecret: SECRET });
    const address = await c.app.listen({ port: 0, host: '127.0.0.1' });
    const port = Number(new URL(address).port);
    // Announces 25 MB and sends none of it: the answer comes all the same.
    const { socket, answered } = await openRequest(port, { 'content-type': 'application/json', 'content-length': String(25 * 1024 * 1024 - 1), 'x-github-event': 'push', 'x-github-delivery': DELIVERY });
    const answer = await Promise.race([answered, new Promise<string>((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString())))]);
    socket.destroy();
    expect(answer).toMatch(/^HTTP\/1\.1 401/);
    expect(answer).toContain('WEBHOOK_SIGNATURE');
  });

  it('closes the connection of a body that does not arrive in time, and frees its slot', async () => {
    c = await startTestController({ githubSecret: SECRET, webhookArrivalMs: 200 });
    const { address, slow } = await trickleInEverySlot(c);
    // The server ends every trickling connection itself (the test only waits for it to).
    await Promise.all(slow.map((r) => r.answered));
    expect(slow.every((r) => r.socket.destroyed || r.socket.readableEnded)).toBe(true);
    // Every slot is free again: a signed delivery is taken.
    expect((await deliverOverHttp(address)).status).toBe(202);
  });

  it('reads at most a few bodies at once: one more is 503 WEBHOOK_BUSY, and a slot freed takes a delivery again', async () => {
    c = await startTestController({ githubSecret: SECRET });
    const { address, slow } = await trickleInEverySlot(c);
    const signed = () => deliverOverHttp(address);
    // The slow senders hold every slot once the server has seen their headers.
    let busy: Response | undefined;
    for (let i = 0; i < 200 && busy?.status !== 503; i++) busy = await signed();
    expect(busy?.status).toBe(503);
    expect(await busy!.json()).toMatchObject({ code: 'WEBHOOK_BUSY' });
    // One slow sender gives up: its slot is free again.
    slow[0]!.socket.destroy();
    let accepted: Response | undefined;
    for (let i = 0; i < 200 && accepted?.status !== 202; i++) {
      accepted = await signed();
      if (accepted.status !== 202) await new Promise((r) => setTimeout(r, 20));
    }
    expect(accepted?.status).toBe(202);
    for (const s of slow) s.socket.destroy();
  });
});
