/**
 * A full disk under the database, made for real: the controller's data directory is a small
 * tmpfs filled to the last byte, so SQLite's writes fail with ENOSPC the way they would on a
 * full volume. Also the SQLITE_FULL SQLite gives when a database reaches its page limit.
 * Writes must answer 507 STORE_FULL with Retry-After (not 500 API_INTERNAL), the log must say
 * "disk full", ENOSPC and the directory, and everything must resume — nothing lost — once
 * space is back.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { DatabaseSync } from 'node:sqlite';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp, type ControllerApp } from '../../src/controller/app.ts';
import { SqliteStore } from '../../src/controller/store/sqlite-store.ts';
import { ControllerClient } from '../../src/agent/controller-client.ts';
import { ExpoError } from '../../src/protocol/errors.ts';
import { sampleValue } from '../support/prom-text.ts';

const ADMIN = { authorization: 'Bearer disk-full-admin-key-0123' };

interface Farm {
  dir: string;
  dbPath: string;
  store: SqliteStore;
  ctl: ControllerApp;
  logLines: string[];
  lease: string;
  buildId: string;
  worker: { authorization: string };
  workerKey: string;
}

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  // Every step runs even when one before it fails: the mount must never outlive the test.
  for (const fn of cleanups.splice(0).reverse()) {
    try {
      await fn();
    } catch {
      // the next cleanup still runs
    }
  }
});

/** A mkdtemp directory with a tmpfs of `sizeKb` mounted on it; unmounted and removed after the test. */
function smallFilesystem(sizeKb: number): string | null {
  const dir = mkdtempSync(join(tmpdir(), 'expo-diskfull-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKb}k,mode=0700`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch {
    return null; // not root, or no mount in this sandbox: the page-limit test still runs
  }
  cleanups.push(() => {
    try {
      execFileSync('umount', [dir], { stdio: 'pipe' });
    } catch {
      execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
    }
  });
  return dir;
}

async function startFarm(dir: string): Promise<Farm> {
  const dbPath = join(dir, 'controller.db');
  const store = new SqliteStore({ path: dbPath });
  await store.migrate();
  const logLines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(chunk.toString());
      done();
    },
  });
  const ctl = await buildApp({
    store,
    adminKey: ADMIN.authorization.slice(7),
    heartbeatTimeoutMs: 120_000,
    maxLogBytes: 64 * 1024 * 1024,
    artifactsDir: join(dir, 'artifacts'),
    defaultBuildTimeoutS: 3600,
    logger: pino({ level: 'info' }, sink),
    dataDir: dir,
  });
  cleanups.push(async () => {
    await ctl.shutdown();
    await store.close();
  });
  const enrol = await ctl.app.inject({ method: 'POST', url: '/api/v1/workers', headers: ADMIN, payload: { id: 'mac-a' } });
  const workerKey = (enrol.json() as { apiKey: string }).apiKey;
  const worker = { authorization: `Bearer ${workerKey}` };
  const buildId = (
    (await ctl.app.inject({ method: 'POST', url: '/api/v1/builds', headers: ADMIN, payload: { steps: [{ name: 's', run: 'true' }] } })).json() as { id: string }
  ).id;
  const claim = await ctl.app.inject({ method: 'POST', url: '/api/v1/workers/mac-a/poll', headers: worker, payload: { slotsFree: 1, runningBuilds: [], waitS: 0 } });
  const lease = (claim.json() as { lease: string }).lease;
  return { dir, dbPath, store, ctl, logLines, lease, buildId, worker, workerKey };
}

/**
 * Empties the WAL into the database file and truncates it (so any later write must grow a file),
 * then fills the filesystem to its last byte. Returns a function giving the space back.
 */
function fillDisk(f: Farm): () => void {
  const side = new DatabaseSync(f.dbPath);
  side.exec('PRAGMA wal_checkpoint(TRUNCATE)');
  side.close();
  const filler = join(f.dir, 'filler');
  const fd = openSync(filler, 'w');
  const block = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) writeSync(fd, block);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  }
  // The last partial block, byte by byte in halves, until not one more byte fits.
  for (let size = 32 * 1024; size >= 1; size = Math.floor(size / 2)) {
    try {
      for (;;) writeSync(fd, block, 0, size);
    } catch {
      // smaller next
    }
  }
  closeSync(fd);
  return () => rmSync(filler, { force: true });
}

const logChunk = (f: Farm, data: string) =>
  f.ctl.app.inject({ method: 'POST', url: `/api/v1/builds/${f.buildId}/logs`, headers: f.worker, payload: { lease: f.lease, offset: 0, data } });

describe('a full disk under the database', () => {
  it('answers 507 STORE_FULL with Retry-After (not 500), logs ENOSPC and the directory, shows in disk_free_bytes, and resumes when space is back', async (t) => {
    const dir = smallFilesystem(4096);
    if (!dir) return t.skip();
    const f = await startFarm(dir);
    const freeSpace = fillDisk(f);
    const chunk = 'x'.repeat(256 * 1024);

    const refused = await logChunk(f, chunk);
    expect(refused.statusCode, refused.body).toBe(507);
    expect(refused.json()).toEqual({ code: 'STORE_FULL', message: expect.stringContaining('disk') as string });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    const said = f.logLines.join('');
    expect(said).toContain('ENOSPC');
    expect(said).toContain('disk full');
    expect(said).toContain(dir);

    // Refused again at once: still 507, but no second error line to fill the disk further.
    expect((await logChunk(f, chunk)).statusCode).toBe(507);
    expect(f.logLines.filter((l) => l.includes('disk full'))).toHaveLength(1);

    const metrics = await f.ctl.app.inject({ method: 'GET', url: '/metrics' });
    expect(sampleValue(metrics.body, 'expo_worker_controller_disk_free_bytes', { path: dir })).toBeLessThan(64 * 1024);

    freeSpace();
    const landed = await logChunk(f, chunk);
    expect(landed.statusCode, landed.body).toBe(200);
    const log = await f.ctl.app.inject({ method: 'GET', url: `/api/v1/builds/${f.buildId}/logs`, headers: ADMIN });
    expect(log.body).toBe(chunk);
    const after = await f.ctl.app.inject({ method: 'GET', url: '/metrics' });
    expect(sampleValue(after.body, 'expo_worker_controller_disk_free_bytes', { path: dir })).toBeGreaterThan(1024 * 1024);
  });

  it("the agent's completion sent while the disk is full is retried until it lands, not dropped", async (t) => {
    const dir = smallFilesystem(4096);
    if (!dir) return t.skip();
    const f = await startFarm(dir);
    await f.ctl.app.listen({ port: 0, host: '127.0.0.1' });
    const port = (f.ctl.app.server.address() as { port: number }).port;
    const client = new ControllerClient({ baseUrl: `http://127.0.0.1:${port}`, apiKey: f.workerKey, workerId: 'mac-a', retryMinMs: 20, retryMaxMs: 100 });
    cleanups.push(() => client.close());
    let freeSpace: (() => void) | null = fillDisk(f);
    const refusals: ExpoError[] = [];
    // A message long enough that the completion cannot fit in what little the full disk has left.
    const result = await client.complete(
      f.buildId,
      { lease: f.lease, status: 'succeeded', message: 'm'.repeat(4000) },
      {
        retries: Number.POSITIVE_INFINITY,
        onRetry: (err) => {
          refusals.push(err);
          freeSpace?.();
          freeSpace = null;
        },
      },
    );
    expect(refusals.length).toBeGreaterThanOrEqual(1);
    expect(refusals[0]!.details).toMatchObject({ status: 507, code: 'STORE_FULL' });
    expect(result.status).toBe('succeeded');
    expect(((await f.ctl.app.inject({ method: 'GET', url: `/api/v1/builds/${f.buildId}`, headers: ADMIN })).json() as { status: string }).status).toBe('succeeded');
  });

  it('prune frees space on a full disk: artifact files go first, then the rows (the deletes were refused 507 for want of WAL space), and writes resume', async (t) => {
    const dir = smallFilesystem(4096);
    if (!dir) return t.skip();
    const f = await startFarm(dir);
    const bytes = Buffer.alloc(1024 * 1024, 7);
    const up = await f.ctl.app.inject({
      method: 'PUT',
      url: `/api/v1/builds/${f.buildId}/artifacts/App.ipa`,
      headers: { ...f.worker, 'x-expo-lease': f.lease, 'content-type': 'application/octet-stream' },
      payload: bytes,
    });
    expect(up.statusCode, up.body).toBe(201);
    const done = await f.ctl.app.inject({ method: 'POST', url: `/api/v1/builds/${f.buildId}/complete`, headers: f.worker, payload: { lease: f.lease, status: 'succeeded' } });
    expect(done.statusCode).toBe(200);
    fillDisk(f); // never given back: the prune has to make the room itself
    const submit = () => f.ctl.app.inject({ method: 'POST', url: '/api/v1/builds', headers: ADMIN, payload: { steps: [{ name: 's', run: 'true' }], env: { PAD: 'p'.repeat(16 * 1024) } } });
    expect((await submit()).statusCode).toBe(507);
    // olderThanDays 0: every build finished before now (filling the disk took a while).
    const pruned = await f.ctl.app.inject({ method: 'POST', url: '/api/v1/admin/prune', headers: ADMIN, payload: { olderThanDays: 0 } });
    expect(pruned.statusCode, pruned.body).toBe(200);
    expect(pruned.json()).toMatchObject({ builds: 1, artifacts: 1, artifactBytes: bytes.length });
    expect((await f.ctl.app.inject({ method: 'GET', url: `/api/v1/builds/${f.buildId}`, headers: ADMIN })).statusCode).toBe(404);
    expect((await submit()).statusCode).toBe(201);
  });

  it('an artifact upload refused for a full disk says the artifact directory is full, not the database', async (t) => {
    const dir = smallFilesystem(4096);
    if (!dir) return t.skip();
    const f = await startFarm(dir);
    fillDisk(f);
    const up = await f.ctl.app.inject({
      method: 'PUT',
      url: `/api/v1/builds/${f.buildId}/artifacts/App.ipa`,
      headers: { ...f.worker, 'x-expo-lease': f.lease, 'content-type': 'application/octet-stream' },
      payload: Buffer.alloc(256 * 1024, 7),
    });
    expect(up.statusCode, up.body).toBe(507);
    expect(up.json()).toMatchObject({ code: 'STORE_FULL', message: expect.stringContaining('artifact directory') as string });
    expect(up.json().message).not.toContain('database');
    expect((await logChunk(f, 'z'.repeat(256 * 1024))).json()).toMatchObject({ code: 'STORE_FULL', message: expect.stringContaining('controller database') as string });
  });

  it('SQLITE_FULL (the database at its page limit) is 507 STORE_FULL too, and the log names the directory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'expo-diskfull-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const f = await startFarm(dir);
    // Limit the database to the pages it has: the next page it needs is refused with SQLITE_FULL.
    const side = new DatabaseSync(f.dbPath);
    side.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    side.close();
    (f.store as unknown as { db: DatabaseSync }).db.exec('PRAGMA max_page_count = 1');
    const refused = await logChunk(f, 'y'.repeat(200 * 1024));
    expect(refused.statusCode, refused.body).toBe(507);
    expect(refused.json()).toMatchObject({ code: 'STORE_FULL' });
    const said = f.logLines.join('');
    expect(said).toContain('SQLITE_FULL');
    expect(said).toContain(dir);
    (f.store as unknown as { db: DatabaseSync }).db.exec('PRAGMA max_page_count = 1073741823');
    expect((await logChunk(f, 'y'.repeat(200 * 1024))).statusCode).toBe(200);
  });
});
