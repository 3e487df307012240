/**
 * The controller with its artifacts in an S3 bucket (s3rver, test/support/s3.ts): a worker's
 * upload lands in the bucket, the list shows it, a download answers 302 to a presigned URL that
 * serves the same bytes, the CLI's client follows that redirect without our key, and retention
 * removes the build's objects.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AdminApi } from '../../src/client/admin-api.ts';
import { contentDisposition } from '../../src/controller/content-disposition.ts';
import { S3Artifacts } from '../../src/controller/s3-artifacts.ts';
import { Retention } from '../../src/controller/retention.ts';
import pino from 'pino';
import { startS3, type TestS3 } from '../support/s3.ts';
import { startTestController, type TestController } from './support.ts';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

let s3: TestS3;
let c: TestController;
let prefixes = 0;
beforeAll(async () => {
  s3 = await startS3();
});
afterAll(async () => {
  await s3?.stop();
});
beforeEach(async () => {
  c = await startTestController({ maxArtifactBytes: 12 * 1024 * 1024, artifacts: new S3Artifacts({ location: s3.location(`ctl-${++prefixes}`), credentials: s3.credentials, partSizeBytes: 5 * 1024 * 1024 }) });
});
afterEach(async () => {
  await c?.close();
});

async function claimed() {
  const w = await c.enrol('mac-1');
  const b = await c.submit({ artifacts: ['out/*'] });
  const claim = (await c.poll('mac-1', w.auth))!;
  return { w, id: b.id, lease: claim.lease };
}

const put = (id: string, name: string, lease: string, auth: Record<string, string>, body: Buffer) =>
  c.app.inject({ method: 'PUT', url: `/api/v1/builds/${id}/artifacts/${name}`, headers: { ...auth, 'x-expo-lease': lease, 'content-type': 'application/octet-stream' }, payload: body });

describe('artifacts in S3', () => {
  it('upload → list → 302 to a presigned URL (no-store, with the digest) → the same bytes, saved under the base name', async () => {
    const { w, id, lease } = await claimed();
    const bytes = Buffer.from(Array.from({ length: 6 * 1024 * 1024 + 7 }, (_, i) => (i * 7) % 251));
    const res = await put(id, 'out/My App.ipa', lease, w.auth, bytes);
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toEqual({ name: 'out/My App.ipa', attempt: 1, sizeBytes: bytes.length, sha256: sha(bytes) });
    const list = await c.app.inject({ method: 'GET', url: `/api/v1/builds/${id}/artifacts`, headers: c.admin });
    expect(list.json().artifacts).toEqual([expect.objectContaining({ name: 'out/My App.ipa', sizeBytes: bytes.length, sha256: sha(bytes) })]);

    const got = await c.app.inject({ method: 'GET', url: `/api/v1/builds/${id}/artifacts/out/My%20App.ipa`, headers: c.admin });
    expect(got.statusCode).toBe(302);
    expect(got.headers['cache-control']).toBe('no-store');
    expect(got.headers['x-artifact-sha256']).toBe(sha(bytes));
    const location = String(got.headers.location);
    expect(location.startsWith(`${s3.endpoint}/${s3.bucket}/ctl-`)).toBe(true);
    // The key is the name's hash (the name is in the URL only as the file name to save as).
    expect(new URL(location).pathname).toMatch(/^\/artifacts\/ctl-\d+\/[a-z0-9]+\/1\/[0-9a-f]{64}$/);
    const fetched = await fetch(location);
    expect(fetched.status).toBe(200);
    expect(fetched.headers.get('content-disposition')).toBe(contentDisposition('out/My App.ipa'));
    expect(Buffer.from(await fetched.arrayBuffer()).equals(bytes)).toBe(true);

    // Still 404 for a name the build does not have, and for no build.
    expect((await c.app.inject({ method: 'GET', url: `/api/v1/builds/${id}/artifacts/out/other.ipa`, headers: c.admin })).statusCode).toBe(404);
  });

  it('refuses an upload past the cap with 413: nothing recorded, nothing in the bucket, no multipart upload left', async () => {
    const url = await c.app.listen({ port: 0, host: '127.0.0.1' });
    const { w, id, lease } = await claimed();
    // No Content-Length to refuse it early: the cap is met while streaming, over real HTTP.
    // A connection of its own, closed after on both sides: the server would otherwise wait at
    // close (over a minute, as with the local directory) for the connection whose body it
    // stopped reading.
    const dispatcher = new Agent();
    const answer = request(`${url}/api/v1/builds/${id}/artifacts/out/big.ipa`, {
      dispatcher,
      method: 'PUT',
      headers: { ...w.auth, 'x-expo-lease': lease, 'content-type': 'application/octet-stream' },
      body: Readable.from((function* () {
        for (let i = 0; i < 20; i++) yield Buffer.alloc(1024 * 1024, i);
      })()),
    });
    let status: number;
    let code: string;
    try {
      const res = await answer;
      status = res.statusCode;
      code = ((await res.body.json()) as { code: string }).code;
    } finally {
      await dispatcher.destroy();
      c.app.server.closeAllConnections();
    }
    expect({ status, code }).toEqual({ status: 413, code: 'API_BODY_TOO_LARGE' });
    expect((await c.app.inject({ method: 'GET', url: `/api/v1/builds/${id}/artifacts`, headers: c.admin })).json().artifacts).toEqual([]);
    expect(await s3.pendingUploads()).toEqual([]);
    expect(await c.retention.prune(0, true)).toMatchObject({ artifacts: 0 });
  });

  it('the CLI downloads through the redirect without sending the key to the storage, and checks the SHA-256', async () => {
    const url = await c.app.listen({ port: 0, host: '127.0.0.1' });
    const { w, id, lease } = await claimed();
    const bytes = Buffer.from('an ipa, more or less');
    expect((await put(id, 'out/App.ipa', lease, w.auth, bytes)).statusCode).toBe(201);
    const admin = new AdminApi({ url, key: c.admin.authorization.slice('Bearer '.length) });
    const [artifact] = (await admin.artifacts(id)).artifacts;
    const from = s3.requests.length;
    const path = join(c.dir, 'App.ipa');
    await admin.downloadArtifact(id, artifact!, path);
    expect(readFileSync(path).equals(bytes)).toBe(true);
    const gets = s3.requests.slice(from).filter((r) => r.method === 'GET');
    expect(gets).toHaveLength(1);
    expect(gets[0]).toMatchObject({ authorization: false, query: expect.arrayContaining(['X-Amz-Signature']) as string[] });
    // A digest that does not match (what a swapped object would give) fails the download, leaving nothing.
    const damaged = join(c.dir, 'damaged.ipa');
    await expect(admin.downloadArtifact(id, { ...artifact!, sha256: sha('something else') }, damaged)).rejects.toThrow(/arrived damaged/);
    expect(() => readFileSync(damaged)).toThrow();
  });

  it('pruning a build removes its objects from the bucket', async () => {
    const { w, id, lease } = await claimed();
    expect((await put(id, 'out/a.txt', lease, w.auth, Buffer.from('aaa'))).statusCode).toBe(201);
    expect((await c.post(`/api/v1/builds/${id}/complete`, w.auth, { lease, status: 'succeeded' })).statusCode).toBe(200);
    c.clock.now += 40 * 24 * 3600 * 1000;
    // A bucket out of reach: the build keeps its records (and its objects), for the next prune to retry.
    const unreachable = new Retention({
      store: c.store,
      blobs: new S3Artifacts({ location: { ...s3.location(`ctl-${prefixes}`), bucket: 'no-such-bucket' }, credentials: s3.credentials }),
      retentionDays: 30,
      now: () => c.clock.now,
      logger: pino({ level: 'silent' }),
    });
    expect(await unreachable.prune(30, false)).toMatchObject({ builds: 0, artifacts: 0 });
    expect((await c.app.inject({ method: 'GET', url: `/api/v1/builds/${id}/artifacts`, headers: c.admin })).json().artifacts).toHaveLength(1);
    expect(await c.retention.prune(30, false)).toMatchObject({ builds: 1, artifacts: 1, artifactBytes: 3 });
    const left = s3.requests.length;
    // The object is gone from the bucket (a list under the build's prefix is empty).
    const blobs = new S3Artifacts({ location: s3.location(`ctl-${prefixes}`), credentials: s3.credentials });
    expect(await blobs.open(id, 1, 'out/a.txt')).toBeNull();
    expect(await blobs.removeBuild(id)).toEqual({ files: 0, bytes: 0 });
    expect(s3.requests.length).toBeGreaterThan(left);
  });
});
