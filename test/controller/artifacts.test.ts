import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ARTIFACT_NAME_MAX_BYTES, artifactNameProblem } from '../../src/protocol/domain.ts';
import { startTestController, type TestController } from './support.ts';

let c: TestController;
beforeEach(async () => {
  c = await startTestController({ maxArtifactBytes: 1024 * 1024 });
});
afterEach(async () => {
  await c.close();
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function claimed(artifacts: unknown[] = ['out/*.ipa']) {
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
    expect(got.headers['content-disposition']).toBe('attachment; filename="App.ipa"; filename*=UTF-8\'\'App.ipa');
    expect(got.headers['x-artifact-sha256']).toBe(sha(bytes));
    expect(got.rawPayload.equals(bytes)).toBe(true);
  });

  it('an artifact is stored private like the database: file 0600 in folders 0700 (they were 0640 and 0755)', async () => {
    const { w, id, lease } = await claimed();
    expect((await put(id, 'out/App.ipa', lease, w.auth, Buffer.from('ipa'))).statusCode).toBe(201);
    const mode = (path: string) => statSync(path).mode & 0o777;
    expect(mode(join(c.dir, 'artifacts', id))).toBe(0o700);
    const attemptDir = join(c.dir, 'artifacts', id, '1');
    expect(mode(attemptDir)).toBe(0o700);
    const files = readdirSync(attemptDir);
    expect(files).toHaveLength(1);
    expect(mode(join(attemptDir, files[0]!))).toBe(0o600);
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

  // Raw dot segments are resolved by URL parsing before routing (a 404 elsewhere); encoded ones
  // reach the route and are refused there. Either way: never stored, never a 5xx.
  it.each(['..', '%2E%2E', 'a%2F..%2Fb', 'out%2F%2E%2Fx', '%2Fetc%2Fpasswd', 'a%2F%2Fb', 'a%2F', 'ctl%01', 'nl%0Aname', 'back%5Cslash'])('refuses the artifact name %j', async (name) => {
    const { w, id, lease } = await claimed();
    const res = await put(id, name, lease, w.auth, Buffer.from('x'));
    expect([400, 404], res.body).toContain(res.statusCode);
    expect(['API_BAD_REQUEST', 'API_NOT_FOUND']).toContain(res.json().code);
    expect((await c.app.inject({ method: 'GET', url: `/api/v1/builds/${id}/artifacts`, headers: c.admin })).json().artifacts).toEqual([]);
  });

  it.each([['/etc/passwd'], ['../secret'], ['out/../../x'], ['a b']])('refuses the artifact pattern %j at submission', async (pattern) => {
    const res = await c.post('/api/v1/builds', c.admin, { steps: [{ name: 's', run: 'true' }], artifacts: [pattern] });
    expect(res.statusCode).toBe(400);
  });

  it('an upload whose build ended and whose folder was removed under it (a prune) answers 409, not 500 ENOENT', async () => {
    const { w, id, lease } = await claimed();
    const body = Readable.from(
      (async function* () {
        yield Buffer.alloc(1000, 1);
        expect((await c.post(`/api/v1/builds/${id}/complete`, w.auth, { lease, status: 'failed' })).statusCode).toBe(200);
        rmSync(join(c.dir, 'artifacts', id), { recursive: true, force: true });
        yield Buffer.alloc(1000, 2);
      })(),
    );
    const res = await c.app.inject({ method: 'PUT', url: `/api/v1/builds/${id}/artifacts/App.ipa`, headers: { ...w.auth, 'x-expo-lease': lease, 'content-type': 'application/octet-stream' }, payload: body });
    expect(res.statusCode, res.body).toBe(409);
    expect(['BUILD_OVER', 'LEASE_STALE']).toContain(res.json().code);
  });

  it('an upload whose folder vanishes while its build is still current is not told its build is over (BUILD_OVER would make the agent abort a live build)', async () => {
    const { w, id, lease } = await claimed();
    const body = Readable.from(
      (async function* () {
        yield Buffer.alloc(1000, 1);
        rmSync(join(c.dir, 'artifacts', id), { recursive: true, force: true });
        yield Buffer.alloc(1000, 2);
      })(),
    );
    const res = await c.app.inject({ method: 'PUT', url: `/api/v1/builds/${id}/artifacts/App.ipa`, headers: { ...w.auth, 'x-expo-lease': lease, 'content-type': 'application/octet-stream' }, payload: body });
    // The controller's own loss: a retryable 5xx, logged, and the build still runs.
    expect(res.statusCode, res.body).toBe(500);
    expect((await c.get(id)).status).toBe('assigned');
  });

  it('a download of an artifact whose file is gone (removed by a prune before its record) is 404 API_NOT_FOUND, not 500', async () => {
    const { w, id, lease } = await claimed();
    expect((await put(id, 'App.ipa', lease, w.auth, Buffer.from('ipa'))).statusCode).toBe(201);
    rmSync(join(c.dir, 'artifacts', id), { recursive: true, force: true });
    const got = await c.app.inject({ method: 'GET', url: `/api/v1/builds/${id}/artifacts/App.ipa`, headers: c.admin });
    expect(got.statusCode).toBe(404);
    expect(got.json()).toMatchObject({ code: 'API_NOT_FOUND' });
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

  it('as the artifact store port: serves its own bytes (no URL), removes a build with counts, and only old .partial files', async () => {
    const { ArtifactFiles } = await import('../../src/controller/artifact-files.ts');
    const { Readable } = await import('node:stream');
    const { utimesSync } = await import('node:fs');
    const root = join(c.dir, 'port');
    const files = new ArtifactFiles(root);
    expect(files.kind).toBe('dir');
    await files.write('bbbbbbbbbbbbbbbb', 1, 'a.ipa', Readable.from([Buffer.from('aaa')]), 100);
    await files.write('bbbbbbbbbbbbbbbb', 2, 'out/b.txt', Readable.from([Buffer.from('bbbb')]), 100);
    await files.write('cccccccccccccccc', 1, 'a.ipa', Readable.from([Buffer.from('keep')]), 100);
    expect(await files.downloadUrl('bbbbbbbbbbbbbbbb', 1, 'a.ipa', 'a.ipa', 60)).toBeNull();
    expect(await files.removeBuild('bbbbbbbbbbbbbbbb')).toEqual({ files: 2, bytes: 7 });
    expect(existsSync(join(root, 'bbbbbbbbbbbbbbbb'))).toBe(false);
    expect(await files.open('cccccccccccccccc', 1, 'a.ipa')).not.toBeNull();
    expect(await files.removeBuild('bbbbbbbbbbbbbbbb')).toEqual({ files: 0, bytes: 0 });
    const stale = join(root, 'cccccccccccccccc', '1', 'x.0123456789ab.partial');
    const fresh = join(root, 'cccccccccccccccc', '1', 'y.0123456789ab.partial');
    writeFileSync(stale, '12345');
    writeFileSync(fresh, '123');
    const old = new Date(Date.now() - 2 * 3600_000);
    utimesSync(stale, old, old);
    expect(await files.removeAbandoned(3600_000)).toEqual({ files: 1, bytes: 5 });
    expect([existsSync(stale), existsSync(fresh)]).toEqual([false, true]);
    expect(await files.removeAbandoned(0)).toEqual({ files: 1, bytes: 3 });
    expect(await files.open('cccccccccccccccc', 1, 'a.ipa')).not.toBeNull();
  });
});

const list = async (id: string) => (await c.app.inject({ method: 'GET', url: `/api/v1/builds/${id}/artifacts`, headers: c.admin })).json() as { artifacts: { name: string; sha256: string }[]; problems: unknown[] };
const download = (id: string, path: string) => c.app.inject({ method: 'GET', url: `/api/v1/builds/${id}/artifacts/${path}`, headers: c.admin });

describe('artifact uploads of any content type (issue 10, item 2)', () => {
  it.each([
    ['application/json', '{"a": 1}'],
    ['application/json', '{not json at all'],
    ['text/plain; charset=utf-8', 'plain text'],
    ['multipart/form-data; boundary=x', '--x\r\n'],
    ['application/x-www-form-urlencoded', 'a=1&b=2'],
    ['application/zip', 'PK\u0003\u0004'],
  ])('an artifact PUT as %s (%j) is stored as its raw bytes, never a 500', async (type, text) => {
    const { w, id, lease } = await claimed();
    const bytes = Buffer.from(text);
    const res = await c.app.inject({ method: 'PUT', url: `/api/v1/builds/${id}/artifacts/report.json`, headers: { ...w.auth, 'x-expo-lease': lease, 'content-type': type }, payload: bytes });
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toMatchObject({ name: 'report.json', sizeBytes: bytes.length, sha256: sha(bytes) });
    expect((await download(id, 'report.json')).rawPayload.equals(bytes)).toBe(true);
  });

  it('an artifact PUT without any Content-Type is stored as its raw bytes, and an empty one as an empty file', async () => {
    const { w, id, lease } = await claimed();
    const res = await c.app.inject({ method: 'PUT', url: `/api/v1/builds/${id}/artifacts/raw.bin`, headers: { ...w.auth, 'x-expo-lease': lease }, payload: Buffer.from('raw') });
    expect(res.statusCode, res.body).toBe(201);
    expect((await download(id, 'raw.bin')).body).toBe('raw');
    const empty = await c.app.inject({ method: 'PUT', url: `/api/v1/builds/${id}/artifacts/empty.bin`, headers: { ...w.auth, 'x-expo-lease': lease } });
    expect(empty.statusCode, empty.body).toBe(201);
    expect(empty.json()).toMatchObject({ sizeBytes: 0, sha256: sha(Buffer.alloc(0)) });
  });

  it('the JSON routes still refuse a body that is not JSON (the raw parser is the artifact routes\' alone)', async () => {
    const res = await c.app.inject({ method: 'POST', url: '/api/v1/builds', headers: { ...c.admin, 'content-type': 'application/octet-stream' }, payload: Buffer.from('{}') });
    expect(res.statusCode).toBe(415);
    expect(res.json().code).toBe('API_UNSUPPORTED_MEDIA_TYPE');
  });
});

describe('artifact names: relative paths with one byte limit (issue 10, items 3 and 10)', () => {
  it('an artifact name of 101 to 512 bytes is stored and served, not refused with 414 FST_ERR_MAX_PARAM_LENGTH', async () => {
    const { w, id, lease } = await claimed();
    const names = [`out/${'a'.repeat(150)}.ipa`, `${'d/'.repeat(100)}${'x'.repeat(ARTIFACT_NAME_MAX_BYTES - 200)}`, `${'é'.repeat((ARTIFACT_NAME_MAX_BYTES - 4) / 2)}.ipa`];
    for (const name of names) {
      expect(Buffer.byteLength(name)).toBeLessThanOrEqual(ARTIFACT_NAME_MAX_BYTES);
      const url = name.split('/').map(encodeURIComponent).join('/');
      const res = await put(id, url, lease, w.auth, Buffer.from(name));
      expect(res.statusCode, res.body).toBe(201);
      expect(res.json().name).toBe(name);
      const got = await download(id, url);
      expect(got.statusCode).toBe(200);
      expect(got.body).toBe(name);
    }
    expect((await list(id)).artifacts.map((a) => a.name).sort()).toEqual([...names].sort());
  });

  it('an artifact name over the byte limit is refused with 400 naming the limit, not 414', async () => {
    const { w, id, lease } = await claimed();
    for (const name of ['x'.repeat(ARTIFACT_NAME_MAX_BYTES + 1), 'é'.repeat(ARTIFACT_NAME_MAX_BYTES / 2 + 1)]) {
      const res = await put(id, encodeURIComponent(name), lease, w.auth, Buffer.from('x'));
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ code: 'API_BAD_REQUEST', message: expect.stringContaining(`at most ${ARTIFACT_NAME_MAX_BYTES} bytes`) });
    }
  });

  it('a pattern is accepted up to the same byte limit at submission and refused past it', async () => {
    const at = await c.post('/api/v1/builds', c.admin, { steps: [{ name: 's', run: 'true' }], artifacts: [`out/${'a'.repeat(ARTIFACT_NAME_MAX_BYTES - 4)}`] });
    expect(at.statusCode).toBe(201);
    const past = await c.post('/api/v1/builds', c.admin, { steps: [{ name: 's', run: 'true' }], artifacts: [`out/${'a'.repeat(ARTIFACT_NAME_MAX_BYTES - 3)}`] });
    expect(past.statusCode).toBe(400);
  });

  it('two artifacts with the same base name from different folders are both kept, each downloadable by its path', async () => {
    const { w, id, lease } = await claimed(['*/build/App.ipa']);
    // The agent keeps the slashes; a client that encodes them as %2F reaches the same artifact.
    expect((await put(id, 'ios/build/App.ipa', lease, w.auth, Buffer.from('ios'))).statusCode).toBe(201);
    expect((await put(id, 'android%2Fbuild%2FApp.ipa', lease, w.auth, Buffer.from('android'))).statusCode).toBe(201);
    expect((await list(id)).artifacts.map((a) => a.name)).toEqual(['android/build/App.ipa', 'ios/build/App.ipa']);
    expect((await download(id, 'ios/build/App.ipa')).body).toBe('ios');
    expect((await download(id, 'android%2Fbuild%2FApp.ipa')).body).toBe('android');
    expect((await download(id, 'App.ipa')).statusCode).toBe(404);
    // On disk a name is never a path: one flat file per artifact, nothing named after a folder.
    expect(readdirSync(join(c.dir, 'artifacts', id, '1')).sort()).toEqual([sha(Buffer.from('android/build/App.ipa')), sha(Buffer.from('ios/build/App.ipa'))].sort());
  });

  it('a name with quotes, spaces and non-ASCII is served with a Content-Disposition that cannot break the header', async () => {
    const { w, id, lease } = await claimed();
    const name = 'out/my "app" €.ipa';
    const url = name.split('/').map(encodeURIComponent).join('/');
    expect((await put(id, url, lease, w.auth, Buffer.from('x'))).statusCode).toBe(201);
    const got = await download(id, url);
    expect(got.statusCode).toBe(200);
    expect(got.headers['content-disposition']).toBe(`attachment; filename="my _app_ _.ipa"; filename*=UTF-8''my%20%22app%22%20%E2%82%AC.ipa`);
  });

  it('an artifact stored under its base name by an older controller is still served', async () => {
    const { w, id, lease } = await claimed();
    await c.post(`/api/v1/builds/${id}/complete`, w.auth, { lease, status: 'succeeded' });
    mkdirSync(join(c.dir, 'artifacts', id, '1'), { recursive: true });
    writeFileSync(join(c.dir, 'artifacts', id, '1', 'Old.ipa'), 'old bytes');
    await c.store.putArtifact({ buildId: id, name: 'Old.ipa', attempt: 1, sizeBytes: 9, sha256: sha(Buffer.from('old bytes')), createdAt: Date.now() });
    expect((await download(id, 'Old.ipa')).body).toBe('old bytes');
  });

  it.each([
    ['App.ipa', null],
    ['ios/build/App.ipa', null],
    ['.expo/state.json', null],
    ['sp ace/é.ipa', null],
    ['..', 'relative path'],
    ['a/../b', 'relative path'],
    ['./a', 'relative path'],
    ['/abs', 'relative path'],
    ['a//b', 'relative path'],
    ['tab\there', 'relative path'],
    ['x'.repeat(ARTIFACT_NAME_MAX_BYTES + 1), 'bytes'],
  ])('artifactNameProblem(%j) → %j', (name, problem) => {
    const got = artifactNameProblem(name);
    if (problem === null) expect(got).toBeNull();
    else expect(got).toContain(problem);
  });
});

describe('declared artifacts: required ones and problems recorded on the build (issue 10, item 3)', () => {
  it('takes plain patterns and {path, required} objects, shows them and hands them to the worker as declared', async () => {
    const declared = ['a/*.ipa', { path: 'b.ipa', required: true }, { path: 'c.txt' }];
    const { build, id } = await claimed(declared as string[]);
    expect(build.artifacts).toEqual(declared);
    expect((await c.get(id)).artifacts).toEqual(declared);
    expect((await c.get(id)).artifactProblems).toEqual([]);
  });

  it.each([[{ path: '../x', required: true }], [{ path: 'x', required: 'yes' }], [{ path: 'x', extra: 1 }], [{ required: true }]])('refuses the declared artifact %j at submission', async (spec) => {
    const res = await c.post('/api/v1/builds', c.admin, { steps: [{ name: 's', run: 'true' }], artifacts: [spec] });
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe('API_BAD_REQUEST');
  });

  const problems = [
    { pattern: 'missing/*.zip', reason: 'no_match', required: false, message: 'no file matches this pattern in the work directory' },
    { pattern: 'out/*.ipa', name: 'out/App.ipa', reason: 'upload_failed', required: true, message: 'PUT …: 503' },
  ];

  it('a pattern that matched nothing is recorded on the build and listed with its artifacts, not lost without a word', async () => {
    const { w, id, lease } = await claimed(['missing/*.zip', 'out/*.ipa']);
    const res = await c.post(`/api/v1/builds/${id}/complete`, w.auth, { lease, status: 'failed', failureReason: 'artifact_missing', message: 'required artifact not stored: out/*.ipa (upload_failed)', artifactProblems: problems });
    expect(res.statusCode, JSON.stringify(res.json())).toBe(200);
    expect(res.json()).toMatchObject({ status: 'failed', failureReason: 'artifact_missing', artifactProblems: problems });
    expect(await c.get(id)).toMatchObject({ artifactProblems: problems });
    expect((await list(id)).problems).toEqual(problems);
    // Repeating the completion is still a no-op answered 200.
    expect((await c.post(`/api/v1/builds/${id}/complete`, w.auth, { lease, status: 'failed', failureReason: 'artifact_missing', message: 'required artifact not stored: out/*.ipa (upload_failed)', artifactProblems: problems })).statusCode).toBe(200);
  });

  it('artifact_missing is the build\'s own failure: never retried, whatever maxAttempts', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit({ maxAttempts: 3, artifacts: [{ path: 'App.ipa', required: true }] });
    const claim = (await c.poll('mac-1', w.auth))!;
    const res = await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: claim.lease, status: 'failed', failureReason: 'artifact_missing', artifactProblems: [{ pattern: 'App.ipa', reason: 'no_match', required: true, message: 'none' }] });
    expect(res.json()).toMatchObject({ status: 'failed', failureReason: 'artifact_missing', attempt: 1 });
    expect(await c.poll('mac-1', w.auth)).toBeNull();
  });

  it('a stale attempt\'s completion cannot replace the problems the current attempt recorded', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit({ maxAttempts: 2, artifacts: ['missing/*.zip'] });
    const first = (await c.poll('mac-1', w.auth))!;
    await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: first.lease, status: 'failed', failureReason: 'vm_crashed' });
    const second = (await c.poll('mac-1', w.auth))!;
    await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: second.lease, status: 'succeeded', artifactProblems: [problems[0]] });
    const late = await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: first.lease, status: 'succeeded', artifactProblems: [] });
    expect(late.statusCode).toBe(409);
    expect((await c.get(b.id)).artifactProblems).toEqual([problems[0]]);
  });

  it('a succeeded completion with a required artifact problem is failed artifact_missing, naming the pattern, not accepted as succeeded', async () => {
    const { w, id, lease } = await claimed([{ path: 'ios/App.ipa', required: true }]);
    const problem = { pattern: 'ios/App.ipa', reason: 'no_match', required: true, message: 'matched no file' };
    const res = await c.post(`/api/v1/builds/${id}/complete`, w.auth, { lease, status: 'succeeded', artifactProblems: [problem] });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ status: 'failed', failureReason: 'artifact_missing', message: expect.stringContaining("'ios/App.ipa'"), artifactProblems: [problem] });
    // The agent retries a completion whose answer it lost: the same one answers 200 again.
    expect((await c.post(`/api/v1/builds/${id}/complete`, w.auth, { lease, status: 'succeeded', artifactProblems: [problem] })).statusCode).toBe(200);
    expect(await c.get(id)).toMatchObject({ status: 'failed', failureReason: 'artifact_missing' });
  });

  it('an agent that reports nothing (an older one) or calls a required artifact optional cannot succeed a build whose required artifact this attempt did not store', async () => {
    const { w, id, lease } = await claimed([{ path: './ios/*.ipa', required: true }, 'logs/*.txt']);
    // Something stored, but not what the required pattern asks for (`*` does not cross a folder).
    expect((await put(id, 'ios/sub/App.ipa', lease, w.auth, Buffer.from('x'))).statusCode).toBe(201);
    const lied = { pattern: './ios/*.ipa', reason: 'no_match', required: false, message: 'matched no file' };
    const res = await c.post(`/api/v1/builds/${id}/complete`, w.auth, { lease, status: 'succeeded', artifactProblems: [lied] });
    expect(res.json()).toMatchObject({ status: 'failed', failureReason: 'artifact_missing', message: expect.stringContaining("'./ios/*.ipa'") });

    const other = await c.submit({ artifacts: [{ path: 'ios/*.ipa', required: true }] });
    const claim = (await c.poll('mac-1', w.auth))!;
    expect(claim.build.id).toBe(other.id);
    const silent = await c.post(`/api/v1/builds/${other.id}/complete`, w.auth, { lease: claim.lease, status: 'succeeded' });
    expect(silent.json()).toMatchObject({ status: 'failed', failureReason: 'artifact_missing', message: expect.stringContaining('no artifact this attempt stored matches it') });
  });

  it('a required artifact this attempt stored lets the build succeed', async () => {
    const { w, id, lease } = await claimed([{ path: 'ios/*.ipa', required: true }]);
    expect((await put(id, 'ios/App.ipa', lease, w.auth, Buffer.from('x'))).statusCode).toBe(201);
    const res = await c.post(`/api/v1/builds/${id}/complete`, w.auth, { lease, status: 'succeeded' });
    expect(res.json()).toMatchObject({ status: 'succeeded', failureReason: null });
  });

  it('an optional artifact problem leaves a succeeded completion succeeded', async () => {
    const { w, id, lease } = await claimed(['out/*.ipa']);
    const problem = { pattern: 'out/*.ipa', reason: 'no_match', required: false, message: 'matched no file' };
    const res = await c.post(`/api/v1/builds/${id}/complete`, w.auth, { lease, status: 'succeeded', artifactProblems: [problem] });
    expect(res.json()).toMatchObject({ status: 'succeeded', failureReason: null, artifactProblems: [problem] });
  });

  it('artifact problems of a failed attempt do not survive a successful retry that sent none', async () => {
    const w = await c.enrol('mac-1');
    const b = await c.submit({ maxAttempts: 2, artifacts: ['out/*.ipa'] });
    const first = (await c.poll('mac-1', w.auth))!;
    const problem = { pattern: 'out/*.ipa', reason: 'upload_failed', required: false, message: 'the controller was unreachable' };
    await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: first.lease, status: 'failed', failureReason: 'vm_crashed', artifactProblems: [problem] });
    expect((await c.get(b.id)).artifactProblems).toEqual([problem]);
    const second = (await c.poll('mac-1', w.auth))!;
    expect((await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: second.lease, status: 'succeeded' })).statusCode).toBe(200);
    expect(await c.get(b.id)).toMatchObject({ status: 'succeeded', artifactProblems: [] });
  });

  it('refuses a problem with an unknown reason', async () => {
    const { w, id, lease } = await claimed();
    const res = await c.post(`/api/v1/builds/${id}/complete`, w.auth, { lease, status: 'succeeded', artifactProblems: [{ pattern: 'x', reason: 'lost', required: false, message: '' }] });
    expect(res.statusCode).toBe(400);
  });
});

describe('artifact names over real HTTP', () => {
  it('names holding ?, #, %, spaces and folders round-trip through the agent\'s and the CLI\'s clients byte for byte', async () => {
    const { ControllerClient, RawBody } = await import('../../src/agent/controller-client.ts');
    const { AdminApi } = await import('../../src/client/admin-api.ts');
    const { Readable } = await import('node:stream');
    const { readFileSync } = await import('node:fs');
    const url = await c.app.listen({ port: 0, host: '127.0.0.1' });
    const { w, id, lease } = await claimed();
    const agent = new ControllerClient({ baseUrl: url, apiKey: w.apiKey, workerId: 'mac-1' });
    const names = ['out/what?.ipa', 'out/#1 build.ipa', 'out/100%.ipa', 'ios/build/App.ipa', 'android/build/App.ipa'];
    for (const name of names) {
      const bytes = Buffer.from(`bytes of ${name}`);
      expect(await agent.uploadArtifact(id, lease, name, new RawBody(Readable.from([bytes]), bytes.length))).toMatchObject({ sizeBytes: bytes.length, sha256: sha(bytes) });
    }
    const admin = new AdminApi({ url, key: c.admin.authorization.slice('Bearer '.length) });
    const { artifacts } = await admin.artifacts(id);
    expect(artifacts.map((a) => a.name).sort()).toEqual([...names].sort());
    try {
      for (const a of artifacts) {
        const path = join(c.dir, `dl-${sha(Buffer.from(a.name)).slice(0, 8)}`);
        await admin.downloadArtifact(id, a, path);
        expect(readFileSync(path, 'utf8')).toBe(`bytes of ${a.name}`);
      }
    } finally {
      await agent.close();
    }
    // Dot segments (resolved by the client's URL parsing, or encoded past it) and absolute names: never stored, never a 5xx.
    const { request } = await import('undici');
    for (const path of ['..', '%2E%2E/x', 'a%2F..%2Fb', 'a%2F.%2Fb', '%2Fetc%2Fpasswd', 'ctl%00']) {
      const res = await request(`${url}/api/v1/builds/${id}/artifacts/${path}`, { method: 'PUT', headers: { ...w.auth, 'x-expo-lease': lease }, body: 'x' });
      const body = (await res.body.json()) as { code: string };
      expect([400, 404], path).toContain(res.statusCode);
      expect(['API_BAD_REQUEST', 'API_NOT_FOUND'], path).toContain(body.code);
    }
    expect((await admin.artifacts(id)).artifacts).toHaveLength(names.length);
  });
});
