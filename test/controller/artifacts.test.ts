import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTestController, type TestController } from './support.ts';

let c: TestController;
beforeEach(async () => {
  c = await startTestController({ maxArtifactBytes: 1024 * 1024 });
});
afterEach(async () => {
  await c.close();
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function claimed(artifacts: string[] = ['out/*.ipa']) {
  const w = await c.enrol('mac-1');
  const b = await c.submit({ artifacts });
  const claim = (await c.poll('mac-1', w.auth))!;
  return { w, id: b.id, lease: claim.lease, build: claim.build as unknown as Record<string, unknown> };
}

const put = (id: string, name: string, lease: string, auth: Record<string, string>, body: Buffer) =>
  c.app.inject({ method: 'PUT', url: `/api/v1/builds/${id}/artifacts/${name}`, headers: { ...auth, 'x-expo-lease': lease, 'content-type': 'application/octet-stream' }, payload: body });

describe('artifacts', () => {
  it('takes the declared patterns with the build, stores an upload with its hash, lists it and serves it back', async () => {
    const { w, id, lease, build } = await claimed();
    expect(build.artifacts).toEqual(['out/*.ipa']);
    expect((await c.get(id)).artifacts).toEqual(['out/*.ipa']);
    const bytes = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 251));
    const res = await put(id, 'App.ipa', lease, w.auth, bytes);
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toEqual({ name: 'App.ipa', attempt: 1, sizeBytes: bytes.length, sha256: sha(bytes) });
    // A retried upload replaces the file.
    expect((await put(id, 'App.ipa', lease, w.auth, bytes)).statusCode).toBe(201);
    const list = await c.app.inject({ method: 'GET', url: `/api/v1/builds/${id}/artifacts`, headers: c.admin });
    expect(list.json().artifacts).toEqual([expect.objectContaining({ name: 'App.ipa', sizeBytes: bytes.length, sha256: sha(bytes) })]);
    const got = await c.app.inject({ method: 'GET', url: `/api/v1/builds/${id}/artifacts/App.ipa`, headers: c.admin });
    expect(got.statusCode).toBe(200);
    expect(got.headers['content-disposition']).toBe('attachment; filename="App.ipa"');
    expect(got.headers['x-artifact-sha256']).toBe(sha(bytes));
    expect(got.rawPayload.equals(bytes)).toBe(true);
  });

  it('refuses an upload past the cap with 413 and leaves no file behind', async () => {
    const { w, id, lease } = await claimed();
    const res = await put(id, 'big.ipa', lease, w.auth, Buffer.alloc(1024 * 1024 + 1));
    expect(res.statusCode).toBe(413);
    expect(res.json().code).toBe('API_BODY_TOO_LARGE');
    const dir = join(c.dir, 'artifacts', id, '1');
    expect(existsSync(dir) ? readdirSync(dir) : []).toEqual([]);
    expect((await c.app.inject({ method: 'GET', url: `/api/v1/builds/${id}/artifacts`, headers: c.admin })).json().artifacts).toEqual([]);
  });

  it('fences uploads on the lease and the worker', async () => {
    const { w, id, lease } = await claimed();
    await c.post(`/api/v1/builds/${id}/complete`, w.auth, { lease, status: 'succeeded' });
    expect((await put(id, 'late.ipa', lease, w.auth, Buffer.from('x'))).statusCode).toBe(409);
    const other = await c.enrol('mac-2');
    const b2 = await c.submit();
    const claim2 = (await c.poll('mac-1', w.auth))!;
    expect((await put(b2.id, 'x.ipa', claim2.lease, other.auth, Buffer.from('x'))).statusCode).toBe(403);
    expect((await put(b2.id, 'x.ipa', claim2.lease, c.admin, Buffer.from('x'))).statusCode).toBe(403);
    expect((await c.app.inject({ method: 'GET', url: `/api/v1/builds/${b2.id}/artifacts`, headers: w.auth })).statusCode).toBe(403);
  });

  it('keeps a later attempt\'s artifact when an earlier attempt uploads the same name', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit({ maxAttempts: 2, artifacts: ['App.ipa'] });
    const first = (await c.poll('mac-1', w.auth))!;
    await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: first.lease, status: 'failed', failureReason: 'vm_crashed' });
    const second = (await c.poll('mac-1', w.auth))!;
    expect((await put(b.id, 'App.ipa', second.lease, w.auth, Buffer.from('second'))).statusCode).toBe(201);
    expect((await put(b.id, 'App.ipa', first.lease, w.auth, Buffer.from('first, late'))).statusCode).toBe(409);
    const got = await c.app.inject({ method: 'GET', url: `/api/v1/builds/${b.id}/artifacts/App.ipa`, headers: c.admin });
    expect(got.body).toBe('second');
  });

  it('refuses an upload without its lease header', async () => {
    const { w, id } = await claimed();
    const res = await c.app.inject({ method: 'PUT', url: `/api/v1/builds/${id}/artifacts/a.ipa`, headers: { ...w.auth, 'content-type': 'application/octet-stream' }, payload: 'x' });
    expect(res.statusCode).toBe(400);
  });

  it.each(['..', '.hidden', 'a%2Fb', 'sp ace'])('refuses the artifact name %j', async (name) => {
    const { w, id, lease } = await claimed();
    const res = await put(id, name, lease, w.auth, Buffer.from('x'));
    expect([400, 404]).toContain(res.statusCode);
  });

  it.each([['/etc/passwd'], ['../secret'], ['out/../../x'], ['a b']])('refuses the artifact pattern %j at submission', async (pattern) => {
    const res = await c.post('/api/v1/builds', c.admin, { steps: [{ name: 's', run: 'true' }], artifacts: [pattern] });
    expect(res.statusCode).toBe(400);
  });

  it('answers 404 for an artifact that was never uploaded', async () => {
    const { id } = await claimed();
    expect((await c.app.inject({ method: 'GET', url: `/api/v1/builds/${id}/artifacts/none.ipa`, headers: c.admin })).statusCode).toBe(404);
  });
});

describe('artifact files', () => {
  it('stops a streamed upload at the cap and removes the partial file', async () => {
    const { ArtifactFiles } = await import('../../src/controller/artifact-files.ts');
    const { Readable } = await import('node:stream');
    const files = new ArtifactFiles(join(c.dir, 'direct'));
    const chunks = Array.from({ length: 10 }, () => Buffer.alloc(1000, 7));
    await expect(files.write('aaaaaaaaaaaaaaaa', 1, 'big.bin', Readable.from(chunks), 5000)).rejects.toMatchObject({ code: 'API_BODY_TOO_LARGE' });
    expect(readdirSync(join(c.dir, 'direct', 'aaaaaaaaaaaaaaaa', '1'))).toEqual([]);
    const ok = await files.write('aaaaaaaaaaaaaaaa', 1, 'small.bin', Readable.from(chunks.slice(0, 4)), 5000);
    expect(ok).toEqual({ sizeBytes: 4000, sha256: sha(Buffer.concat(chunks.slice(0, 4))) });
  });
});
