/**
 * `expo-worker backup` on a real SQLite database that another process writes to all along (a
 * stand-in controller: a SqliteStore creating builds in a loop), with the CLI as a real child
 * process: the copy opens, passes the integrity check, holds every build committed before the
 * backup began, is 0600 and replaces nothing without --force.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/controller/store/sqlite-store.ts';
import { backupMain } from '../../src/controller/store-commands.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const CLI = join(ROOT, 'src/cli.ts');

let dir: string;
let writer: ChildProcessWithoutNullStreams | null = null;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'expo-backup-'));
});
afterEach(async () => {
  if (writer && writer.exitCode === null && writer.signalCode === null) {
    const w = writer;
    await new Promise<void>((done) => {
      w.once('exit', () => done());
      w.kill('SIGKILL');
    });
  }
  writer = null;
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `expo-worker ARGS` as a child process. */
const cli = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> =>
  new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, EXPO_CONTROLLER_DB: '', ...env }, cwd: dir });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.once('error', reject);
    p.once('close', (code) => resolve({ code, stdout, stderr }));
  });

/** A process writing builds (with log chunks) into the database without pause; prints each id once committed. */
function startWriter(db: string): { committed: string[]; reached: (n: number) => Promise<void> } {
  const script = `
    import { SqliteStore } from ${JSON.stringify(join(ROOT, 'src/controller/store/sqlite-store.ts'))};
    const store = new SqliteStore({ path: process.argv[1] });
    await store.migrate();
    for (let i = 0; ; i++) {
      const id = 'w' + String(i).padStart(15, '0');
      await store.createBuild({ id, steps: [{ name: 's', run: 'true' }], env: {}, secretEnvNames: [], secretEnvSealed: null, labels: [], artifacts: [], timeoutS: 60, maxAttempts: 1, createdAt: Date.now() });
      await store.appendLog(id, 0, Buffer.alloc(2048, 0x61), 1 << 20);
      process.stdout.write(id + '\\n');
      await new Promise((r) => setImmediate(r));
    }`;
  writer = spawn(process.execPath, ['--input-type=module', '-e', script, db], { stdio: ['pipe', 'pipe', 'pipe'] });
  const committed: string[] = [];
  const waiters: { n: number; done: () => void }[] = [];
  let stderr = '';
  writer.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  writer.once('exit', (code) => {
    for (const w of waiters.splice(0)) w.done();
    if (code !== null && code !== 0) committed.push(`writer exited ${code}: ${stderr}`);
  });
  createInterface({ input: writer.stdout }).on('line', (id) => {
    committed.push(id);
    for (const w of waiters.filter((w) => committed.length >= w.n)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.done();
    }
  });
  return { committed, reached: (n) => new Promise((done) => (committed.length >= n ? done() : waiters.push({ n, done }))) };
}

describe('expo-worker backup', () => {
  it('copies the database while another process writes to it: the copy opens, is intact, 0600, and has every build committed before it began', async () => {
    const db = join(dir, 'controller.db');
    const w = startWriter(db);
    await w.reached(200);
    const before = [...w.committed];
    const dest = join(dir, 'backup.db');
    const r = await cli(['backup', dest, '--db', db]);
    // The writer kept writing during the backup.
    const countAtEnd = w.committed.length;
    await w.reached(countAtEnd + 20);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/schema version \d+/);
    expect(r.stdout).toContain('secret-env.key');
    expect(statSync(dest).mode & 0o777).toBe(0o600);
    // Nothing left beside it: no temporary file, no -wal.
    expect(readdirSync(dir).sort()).toEqual(['backup.db', 'controller.db', 'controller.db-shm', 'controller.db-wal']);

    const copy = new DatabaseSync(dest, { readOnly: true });
    try {
      expect(copy.prepare('PRAGMA integrity_check').get()).toEqual({ integrity_check: 'ok' });
      const ids = new Set((copy.prepare('SELECT id FROM builds').all() as { id: string }[]).map((b) => b.id));
      for (const id of before) expect(ids.has(id)).toBe(true);
      expect(ids.size).toBeLessThan(w.committed.length);
    } finally {
      copy.close();
    }
    const store = new SqliteStore({ path: dest });
    try {
      expect(await store.getBuild(before.at(-1)!)).toMatchObject({ id: before.at(-1), status: 'queued' });
      expect((await store.readLog(before[0]!, 0)).length).toBe(2048);
    } finally {
      await store.close();
    }
  }, 120_000);

  it('refuses to replace an existing PATH without --force, and replaces it with --force', async () => {
    const db = join(dir, 'controller.db');
    const store = new SqliteStore({ path: db });
    await store.migrate();
    await store.close();
    const dest = join(dir, 'backup.db');
    writeFileSync(dest, 'precious');
    const lines: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(`ERR ${l}`), env: {} };
    expect(await backupMain([dest, '--db', db], io)).toBe(1);
    expect(lines.join('\n')).toContain('pass --force');
    expect(statSync(dest).size).toBe('precious'.length);
    expect(readdirSync(dir).filter((f) => f.includes('tmp'))).toEqual([]);

    expect(await backupMain([dir, '--db', db, '--force'], io)).toBe(64);
    expect(lines.join('\n')).toContain('is a directory');

    lines.length = 0;
    expect(await backupMain([dest, '--force'], { ...io, env: { EXPO_CONTROLLER_DB: db } })).toBe(0);
    expect(lines.join('\n')).toMatch(/integrity ok/);
    expect(statSync(dest).mode & 0o777).toBe(0o600);
    const copy = new DatabaseSync(dest, { readOnly: true });
    try {
      expect(copy.prepare('SELECT count(*) AS n FROM builds').get()).toEqual({ n: 0 });
    } finally {
      copy.close();
    }
  });

  it('refuses a PostgreSQL --db (pointing to pg_dump), a missing --db or database, and a file that is not ours, creating nothing', async () => {
    const dest = join(dir, 'backup.db');
    const pgR = await cli(['backup', dest, '--db', 'postgres://expo:hunter2@127.0.0.1:1/farm']);
    expect(pgR.code).toBe(64);
    expect(pgR.stderr).toContain('pg_dump');
    expect(pgR.stderr).not.toContain('hunter2');
    const none = await cli(['backup', dest]);
    expect(none.code).toBe(64);
    expect(none.stderr).toContain('EXPO_CONTROLLER_DB');
    const missing = await cli(['backup', dest, '--db', join(dir, 'nope.db')]);
    expect(missing.code).toBe(64);
    expect(missing.stderr).toContain('no database at');
    const other = join(dir, 'other.db');
    new DatabaseSync(other).close();
    const notOurs = await cli(['backup', dest, '--db', other]);
    expect(notOurs.code).toBe(1);
    expect(notOurs.stderr).toContain('not an expo-worker database');
    expect(readdirSync(dir)).toEqual(['other.db']);
  }, 60_000);
});
