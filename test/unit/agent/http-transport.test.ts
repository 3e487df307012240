/**
 * The agent's HTTP transport against a real HTTP server: a whole answer, a stream sent with its
 * length, the two timeouts (headers, then body), an answer cut mid-way, an abort.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpPool, TransportError } from '../../../src/agent/http-transport.ts';

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

async function serve(handler: (req: IncomingMessage, res: ServerResponse, body: string) => void): Promise<{ url: URL; pool: HttpPool }> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => handler(req, res, body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const pool = new HttpPool();
  cleanup = async () => {
    pool.close();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };
  return { url: new URL(`http://127.0.0.1:${(server.address() as { port: number }).port}/x`), pool };
}

describe('HttpPool', () => {
  it('sends JSON with its length and a stream with the length given, and reads the whole answer', async () => {
    const seen: { length: string | undefined; chunked: boolean; body: string }[] = [];
    const { url, pool } = await serve((req, res, body) => {
      seen.push({ length: req.headers['content-length'], chunked: req.headers['transfer-encoding'] === 'chunked', body });
      res.writeHead(201, { 'content-type': 'application/json', 'x-a': '1' }).end('{"ok":true}');
    });
    const a = await pool.send(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"é":1}', timeoutMs: 5000 });
    expect(a).toMatchObject({ status: 201, text: '{"ok":true}' });
    expect(a.headers['x-a']).toBe('1');
    await pool.send(url, { method: 'PUT', headers: { 'content-length': '6' }, body: Readable.from([Buffer.from('abc'), Buffer.from('def')]), timeoutMs: 5000 });
    expect(seen).toEqual([
      { length: String(Buffer.byteLength('{"é":1}')), chunked: false, body: '{"é":1}' },
      { length: '6', chunked: false, body: 'abcdef' },
    ]);
  });

  it('gives up on headers that do not come within the timeout, as no answer', async () => {
    const { url, pool } = await serve(() => {
      // never answers
    });
    await expect(pool.send(url, { method: 'GET', headers: {}, timeoutMs: 100 })).rejects.toMatchObject({ name: 'TransportError', phase: 'send', message: expect.stringContaining('headers timeout') });
  });

  it('gives up on a body that stops coming, as an answer cut mid-way', async () => {
    const { url, pool } = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('{"par');
    });
    await expect(pool.send(url, { method: 'GET', headers: {}, timeoutMs: 200 })).rejects.toMatchObject({ phase: 'body', message: expect.stringContaining('body timeout') });
  });

  it('reports a connection closed mid-answer as a cut answer, and a refused one as no answer', async () => {
    const { url, pool } = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('{"par');
      setImmediate(() => res.destroy());
    });
    await expect(pool.send(url, { method: 'GET', headers: {}, timeoutMs: 5000 })).rejects.toMatchObject({ phase: 'body' });
    await cleanup?.();
    cleanup = undefined;
    const err = await pool.send(url, { method: 'GET', headers: {}, timeoutMs: 5000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect(err).toMatchObject({ phase: 'send', message: expect.stringContaining('ECONNREFUSED') });
  });

  it('rejects with the abort reason when its signal aborts, not as a transport failure', async () => {
    const { url, pool } = await serve(() => {
      // held until aborted
    });
    const ac = new AbortController();
    const sent = pool.send(url, { method: 'POST', headers: {}, body: '{}', timeoutMs: 60_000, signal: ac.signal });
    setTimeout(() => ac.abort(new Error('stop')), 50);
    await expect(sent).rejects.toThrow('stop');
    const already = AbortSignal.abort(new Error('before'));
    await expect(pool.send(url, { method: 'GET', headers: {}, timeoutMs: 60_000, signal: already })).rejects.toThrow('before');
  });
});
