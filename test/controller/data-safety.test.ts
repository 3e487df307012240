/**
 * Data safety on a real SQLite file: secret env values never shown by the API, sealed at rest
 * while the build may run, erased when it ends, masked in the stored log; leases kept hashed;
 * retention deletes exactly the old final builds with their logs and artifact files.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/sys/logger.ts';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTestController, type TestController } from './support.ts';

const SECRET = 'sk_live_5ecr3t_VALUE_42';
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

let c: TestController;
beforeEach(async () => {
  c = await startTestController();
});
afterEach(async () => {
  await c.close();
});

/** Every byte SQLite holds for the database: the file and its write-ahead log. */
function dbBytes(): Buffer {
  const path = join(c.dir, 'controller.db');
  return Buffer.concat([path, `${path}-wal`].filter((p) => existsSync(p)).map((p) => readFileSync(p)));
}

/** The build's sealed secret env as the store holds it (null once erased). */
async function sealedOf(id: string): Promise<Buffer | null> {
  return (await c.store.getBuild(id))!.secretEnvSealed;
}

async function complete(id: string, auth: Record<string, string>, lease: string, status = 'succeeded') {
  return c.post(`/api/v1/builds/${id}/complete`, auth, { lease, status });
}

describe('secret env', () => {
  it('a secret value is never in an API answer: the build shows its name only', async () => {
    const res = await c.post('/api/v1/builds', c.admin, { steps: [{ name: 's', run: 'true' }], env: { PLAIN: 'x' }, secretEnv: { TOKEN: SECRET } });
    expect(res.statusCode).toBe(201);
    expect(JSON.stringify(res.json())).not.toContain(SECRET);
    expect(res.json()).toMatchObject({ envNames: ['PLAIN'], secretEnvNames: ['TOKEN'] });
    const id = res.json().id as string;
    const got = await c.app.inject({ method: 'GET', url: `/api/v1/builds/${id}`, headers: c.admin });
    const list = await c.app.inject({ method: 'GET', url: '/api/v1/builds', headers: c.admin });
    expect(got.body).not.toContain(SECRET);
    expect(list.body).not.toContain(SECRET);
  });

  it('a queued secret is encrypted at rest: its bytes are nowhere in the database file', async () => {
    const b = await c.submit({ secretEnv: { TOKEN: SECRET } });
    expect(dbBytes().includes(SECRET)).toBe(false);
    const sealed = await sealedOf(b.id);
    expect(sealed).not.toBeNull();
    expect(sealed!.includes(SECRET)).toBe(false);
  });

  it('the worker gets the secret values in its claim', async () => {
    const w = await c.enrol('w1');
    await c.submit({ env: { A: '1' }, secretEnv: { TOKEN: SECRET } });
    const claim = (await c.poll('w1', w.auth))! as unknown as { build: { env: Record<string, string>; secretEnv: Record<string, string> } };
    expect(claim.build.env).toEqual({ A: '1' });
    expect(claim.build.secretEnv).toEqual({ TOKEN: SECRET });
  });

  it('the secret is erased from the store when the build ends, not before (a retry still gets it)', async () => {
    const w = await c.enrol('w1');
    const b = await c.submit({ secretEnv: { TOKEN: SECRET }, maxAttempts: 2 });
    const first = (await c.poll('w1', w.auth))!;
    expect((await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: first.lease, phase: 'running' })).statusCode).toBe(200);
    expect((await complete(b.id, w.auth, first.lease, 'failed').then(async () => c.get(b.id))).status).toBe('failed');
    // That was a build failure (never retried): the values are gone at once.
    expect(await sealedOf(b.id)).toBeNull();

    const r = await c.submit({ secretEnv: { TOKEN: SECRET }, maxAttempts: 2 });
    const a1 = (await c.poll('w1', w.auth))!;
    expect((await c.post(`/api/v1/builds/${r.id}/complete`, w.auth, { lease: a1.lease, status: 'failed', failureReason: 'vm_crashed' })).statusCode).toBe(200);
    expect(await sealedOf(r.id)).not.toBeNull();
    const a2 = (await c.poll('w1', w.auth, { runningBuilds: [] }))! as unknown as { build: { secretEnv?: Record<string, string> }; lease: string };
    expect(a2.build.secretEnv).toEqual({ TOKEN: SECRET });
    expect((await complete(r.id, w.auth, a2.lease)).statusCode).toBe(200);
    expect(await c.store.getBuild(r.id)).toMatchObject({ secretEnvSealed: null, secretEnvNames: ['TOKEN'] });
  });

  it('a secret sealed under another key fails its build at the claim instead of looping back to the queue', async () => {
    const w = await c.enrol('w1');
    const b = await c.submit({ secretEnv: { TOKEN: SECRET } });
    resealUnderAnotherKey(b.id);
    expect(await c.poll('w1', w.auth)).toBeNull();
    expect(await c.get(b.id)).toMatchObject({ status: 'failed', failureReason: 'build_failed', message: expect.stringMatching(/cannot be opened with this controller's key/) });
    expect(await sealedOf(b.id)).toBeNull();
  });

  it('an erased secret is not left in the write-ahead log: neither the value nor its sealed blob is anywhere in the db or -wal bytes', async () => {
    const w = await c.enrol('w1');
    const done = await c.submit({ secretEnv: { TOKEN: SECRET } });
    const cancelled = await c.submit({ secretEnv: { TOKEN: SECRET }, labels: ['nobody-has-this'] });
    const blobs = [(await sealedOf(done.id))!, (await sealedOf(cancelled.id))!];
    expect(blobs.every((b) => dbBytes().includes(b))).toBe(true);
    const claim = (await c.poll('w1', w.auth))!;
    expect(claim.build.id).toBe(done.id);
    expect((await complete(done.id, w.auth, claim.lease)).statusCode).toBe(200);
    expect(dbBytes().includes(blobs[0]!)).toBe(false);
    expect((await c.post(`/api/v1/builds/${cancelled.id}/cancel`, c.admin)).statusCode).toBe(200);
    const bytes = dbBytes();
    for (const b of blobs) expect(bytes.includes(b)).toBe(false);
    expect(bytes.includes(SECRET)).toBe(false);
  });

  it('a reader holding an old snapshot (a backup) does not hold up the erase; the old log frames go at the next truncation it allows', async () => {
    const w = await c.enrol('w1');
    const b = await c.submit({ secretEnv: { TOKEN: SECRET } });
    const blob = (await sealedOf(b.id))!;
    const claim = (await c.poll('w1', w.auth))!;
    const backup = new DatabaseSync(join(c.dir, 'controller.db'), { readOnly: true });
    try {
      backup.exec('BEGIN');
      backup.prepare('SELECT COUNT(*) FROM builds').get();
      expect((await complete(b.id, w.auth, claim.lease)).statusCode).toBe(200);
      expect(await c.get(b.id)).toMatchObject({ status: 'succeeded' });
      // Held off: the log could not be emptied under the reader.
      expect(dbBytes().includes(blob)).toBe(true);
    } finally {
      backup.close();
    }
    // The next erase finds no reader in the way and empties the log, old frames included.
    const other = await c.submit({ secretEnv: { TOKEN: SECRET }, labels: ['nobody-has-this'] });
    expect((await c.post(`/api/v1/builds/${other.id}/cancel`, c.admin)).statusCode).toBe(200);
    expect(dbBytes().includes(blob)).toBe(false);
  });

  it('cancelling a queued build erases its secret', async () => {
    const b = await c.submit({ secretEnv: { TOKEN: SECRET } });
    expect((await c.post(`/api/v1/builds/${b.id}/cancel`, c.admin)).statusCode).toBe(200);
    expect(await sealedOf(b.id)).toBeNull();
  });

  it('a secret in a log chunk is starred out by the controller too, byte for byte', async () => {
    const w = await c.enrol('w1');
    const b = await c.submit({ secretEnv: { TOKEN: SECRET } });
    const claim = (await c.poll('w1', w.auth))!;
    const data = `token=${SECRET}\n`;
    const res = await c.post(`/api/v1/builds/${b.id}/logs`, w.auth, { lease: claim.lease, offset: claim.build.logOffset, data });
    expect(res.statusCode).toBe(200);
    expect(res.json().logBytes).toBe(claim.build.logOffset + Buffer.byteLength(data));
    const log = await c.app.inject({ method: 'GET', url: `/api/v1/builds/${b.id}/logs`, headers: c.admin });
    expect(log.body).toBe(`token=${'*'.repeat(SECRET.length)}\n`);
    expect(dbBytes().includes(SECRET)).toBe(false);
  });

  it('secret env values are redacted wherever a logged object carries them', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    createLogger('expo-worker-agent', 'info', sink).info({ secretEnv: { T: 's1-secret' }, build: { secretEnv: { T: 's2-secret' } }, claim: { build: { secretEnv: { T: 's3-secret' } } } }, 'x');
    const out = lines.join('');
    for (const v of ['s1-secret', 's2-secret', 's3-secret']) expect(out).not.toContain(v);
  });

  it('a secret value shorter than the masking minimum is refused at submission, naming the variable and the minimum (it was accepted and never masked)', async () => {
    const res = await c.post('/api/v1/builds', c.admin, { steps: [{ name: 's', run: 'true' }], secretEnv: { PIN: '123', TOKEN: SECRET } });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ code: 'API_BAD_REQUEST', message: expect.stringMatching(/PIN.*at least 4 characters/) });
    expect(res.json().message).not.toContain('TOKEN');
    expect((await c.post('/api/v1/builds', c.admin, { steps: [{ name: 's', run: 'true' }], secretEnv: { PIN: '1234' } })).statusCode).toBe(201);
  });

  it('a secret in the completion message or an artifact problem message is starred out before it is stored', async () => {
    const w = await c.enrol('w1');
    const b = await c.submit({ secretEnv: { TOKEN: SECRET }, artifacts: ['out/*.ipa'] });
    const claim = (await c.poll('w1', w.auth))!;
    const problem = { pattern: 'out/*.ipa', reason: 'upload_failed', required: false, message: `PUT ?t=${SECRET}: 503` };
    const res = await c.post(`/api/v1/builds/${b.id}/complete`, w.auth, { lease: claim.lease, status: 'failed', message: `step failed: ${SECRET}`, artifactProblems: [problem] });
    expect(res.statusCode).toBe(200);
    const stars = '*'.repeat(SECRET.length);
    expect(await c.get(b.id)).toMatchObject({ message: `step failed: ${stars}`, artifactProblems: [{ ...problem, message: `PUT ?t=${stars}: 503` }] });
    expect(dbBytes().includes(SECRET)).toBe(false);
  });

  it('a log chunk for a build whose secret-env key was replaced fails the build with a clear message and answers 409 BUILD_OVER, not 500 on every chunk', async () => {
    const w = await c.enrol('w1');
    const b = await c.submit({ secretEnv: { TOKEN: SECRET } });
    const claim = (await c.poll('w1', w.auth))!;
    resealUnderAnotherKey(b.id);
    const res = await c.post(`/api/v1/builds/${b.id}/logs`, w.auth, { lease: claim.lease, offset: claim.build.logOffset, data: `token=${SECRET}\n` });
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ code: 'BUILD_OVER', message: expect.stringMatching(/cannot be opened with this controller's key/) });
    expect(await c.get(b.id)).toMatchObject({ status: 'failed', failureReason: 'build_failed', message: expect.stringMatching(/secret-env.key replaced/) });
    expect(await sealedOf(b.id)).toBeNull();
    // The agent's next chunk hears the same, from the lease check.
    expect((await c.post(`/api/v1/builds/${b.id}/logs`, w.auth, { lease: claim.lease, offset: claim.build.logOffset, data: 'x' })).statusCode).toBe(409);
  });

  it('a name in both env and secretEnv is refused', async () => {
    const res = await c.post('/api/v1/builds', c.admin, { steps: [{ name: 's', run: 'true' }], env: { TOKEN: 'a' }, secretEnv: { TOKEN: SECRET } });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ code: 'API_BAD_REQUEST' });
  });
});

describe('leases', () => {
  it('the lease is not in clear in the database, and the worker still acts with it', async () => {
    const w = await c.enrol('w1');
    const b = await c.submit();
    const claim = (await c.poll('w1', w.auth))!;
    expect((await c.store.getBuild(b.id))!.lease).toBe(sha256(claim.lease));
    expect((await c.store.listAttempts(b.id)).map((a) => a.lease)).toEqual([sha256(claim.lease)]);
    expect(dbBytes().includes(claim.lease)).toBe(false);
    expect((await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: claim.lease, phase: 'running' })).statusCode).toBe(200);
    // The digest itself is not a lease.
    expect((await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: sha256(claim.lease), phase: 'running' })).statusCode).toBe(409);
    expect((await complete(b.id, w.auth, claim.lease)).statusCode).toBe(200);
  });
});

describe('retention', () => {
  const DAY = 24 * 3600 * 1000;

  async function finishedBuild(w: { auth: { authorization: string } }, artifact?: string): Promise<string> {
    const b = await c.submit();
    const claim = (await c.poll('w1', w.auth))!;
    await c.post(`/api/v1/builds/${b.id}/phase`, w.auth, { lease: claim.lease, phase: 'running' });
    await c.post(`/api/v1/builds/${b.id}/logs`, w.auth, { lease: claim.lease, offset: claim.build.logOffset, data: 'some output\n' });
    if (artifact !== undefined) {
      const up = await c.app.inject({
        method: 'PUT',
        url: `/api/v1/builds/${b.id}/artifacts/${artifact}`,
        headers: { ...w.auth, 'x-expo-lease': claim.lease, 'content-type': 'application/octet-stream' },
        payload: Buffer.alloc(1000, 1),
      });
      expect(up.statusCode).toBeLessThan(300);
    }
    expect((await complete(b.id, w.auth, claim.lease)).statusCode).toBe(200);
    return b.id;
  }

  const prune = (body: Record<string, unknown>) => c.post('/api/v1/admin/prune', c.admin, body);

  it('a dry run counts the old final builds; a real prune deletes exactly those, with their logs and artifact files', async () => {
    const w = await c.enrol('w1');
    const old1 = await finishedBuild(w, 'App.ipa');
    const old2 = await finishedBuild(w);
    const oldQueued = await c.submit({ labels: ['nobody-has-this'] });
    c.clock.now += 31 * DAY;
    const recent = await finishedBuild(w, 'App.ipa');
    expect(existsSync(join(c.dir, 'artifacts', old1))).toBe(true);

    const dry = await prune({ olderThanDays: 30, dryRun: true });
    expect(dry.statusCode).toBe(200);
    expect(dry.json()).toMatchObject({ dryRun: true, olderThanDays: 30, builds: 2, logBytes: 24, artifacts: 1, artifactBytes: 1000 });
    expect((await c.app.inject({ method: 'GET', url: `/api/v1/builds/${old1}`, headers: c.admin })).statusCode).toBe(200);

    const real = await prune({ olderThanDays: 30 });
    expect(real.json()).toMatchObject({ dryRun: false, builds: 2, logBytes: 24, artifacts: 1, artifactBytes: 1000 });
    for (const id of [old1, old2]) {
      expect((await c.app.inject({ method: 'GET', url: `/api/v1/builds/${id}`, headers: c.admin })).statusCode).toBe(404);
      expect([await c.store.listAttempts(id), (await c.store.readLog(id, 0)).length, await c.store.listArtifacts(id)]).toEqual([[], 0, []]);
    }
    expect(existsSync(join(c.dir, 'artifacts', old1))).toBe(false);
    // A queued build is never pruned, however old; a recent one stays with its file.
    expect((await c.get(oldQueued.id)).status).toBe('queued');
    expect((await c.get(recent)).status).toBe('succeeded');
    expect(existsSync(join(c.dir, 'artifacts', recent))).toBe(true);
    expect((await prune({ olderThanDays: 30 })).json()).toMatchObject({ builds: 0 });
  });

  it('a prune with no body at all uses the defaults (it was refused 400 "body must be object")', async () => {
    const w = await c.enrol('w1');
    const old = await finishedBuild(w);
    c.clock.now += 31 * DAY;
    const res = await c.post('/api/v1/admin/prune', c.admin);
    expect(res.statusCode, JSON.stringify(res.json())).toBe(200);
    expect(res.json()).toMatchObject({ dryRun: false, olderThanDays: 30, builds: 1 });
    expect((await c.app.inject({ method: 'GET', url: `/api/v1/builds/${old}`, headers: c.admin })).statusCode).toBe(404);
    expect((await c.app.inject({ method: 'POST', url: '/api/v1/admin/prune', headers: { ...c.admin, 'content-type': 'application/json' }, payload: '[]' })).statusCode).toBe(400);
  });

  it('prune needs the admin key', async () => {
    const w = await c.enrol('w1');
    expect((await c.post('/api/v1/admin/prune', w.auth, { dryRun: true })).statusCode).toBe(403);
    expect((await c.post('/api/v1/admin/prune', {}, { dryRun: true })).statusCode).toBe(401);
    expect((await prune({ olderThanDays: -1 })).statusCode).toBe(400);
  });

  it('.partial files left by an interrupted upload are removed once old, and a fresh one is kept', async () => {
    const dir = join(c.dir, 'artifacts', 'aaaaaaaaaaaaaaaa', '1');
    mkdirSync(dir, { recursive: true });
    const stale = join(dir, 'App.ipa.0123456789ab.partial');
    const fresh = join(dir, 'App.ipa.ba9876543210.partial');
    const kept = join(dir, 'App.ipa');
    for (const p of [stale, fresh, kept]) writeFileSync(p, 'x'.repeat(10));
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    utimesSync(stale, twoHoursAgo, twoHoursAgo);
    utimesSync(kept, twoHoursAgo, twoHoursAgo);
    expect(await c.retention.removeAbandoned(3600_000)).toEqual({ files: 1, bytes: 10 });
    expect([existsSync(stale), existsSync(fresh), existsSync(kept)]).toEqual([false, true, true]);
  });
});

/**
 * Damages a build's sealed secret env in the database, as if another controller key had sealed it.
 * The one write behind the store's back: the port rightly offers no way to alter a sealed value.
 */
function resealUnderAnotherKey(buildId: string): void {
  const db = new DatabaseSync(join(c.dir, 'controller.db'));
  try {
    const sealed = Buffer.from((db.prepare('SELECT secret_env FROM builds WHERE id = ?').get(buildId) as { secret_env: Uint8Array }).secret_env);
    sealed[sealed.length - 1]! ^= 0xff;
    db.prepare('UPDATE builds SET secret_env = ? WHERE id = ?').run(sealed, buildId);
  } finally {
    db.close();
  }
}
