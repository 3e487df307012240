/**
 * `expo-worker backup` on a real SQLite database that another process writes to all along (a
 * stand-in controller: a SqliteStore creating builds in a loop), with the CLI as a real child
 * process: the copy opens, passes the integrity check, holds every build committed before the
 * backup began, is 0600 and replaces nothing without --force. PATH is never the live database
 * (or its -wal/-shm/-journal) under another name; an interrupted backup leaves no temporary file;
 * a filesystem without hard links still gets a backup that replaces nothing.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/controller/store/sqlite-store.ts';
import { backupMain } from '../../src/controller/store-commands.ts';
import { backupSqlite } from '../../src/controller/store/sqlite-backup.ts';
import { runCli, type CliResult } from '../support/run-cli.ts';

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
const cli = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> => runCli(args, { cwd: dir, env: { EXPO_CONTROLLER_DB: '', ...env } });

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

  it('refuses a PATH that is the live database or one of its files under another name, even with --force', async () => {
    const db = join(dir, 'controller.db');
    const store = new SqliteStore({ path: db });
    await store.migrate();
    await store.createBuild({ id: 'b000000000000001', steps: [{ name: 's', run: 'true' }], env: {}, secretEnvNames: [], secretEnvSealed: null, labels: [], artifacts: [], timeoutS: 60, maxAttempts: 1, createdAt: 1 });
    // The controller stays open: its -wal and -shm exist.
    try {
      const before = readFileSync(db);
      symlinkSync(dir, join(dir, 'alias'));
      linkSync(db, join(dir, 'hard.db'));
      const lines: string[] = [];
      const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l), env: {} };
      for (const dest of [join(dir, 'alias', 'controller.db'), `${db}-wal`, join(dir, 'alias', 'controller.db-shm'), `${db}-journal`, join(dir, 'hard.db')]) {
        expect(await backupMain([dest, '--db', db, '--force'], io), dest).toBe(64);
      }
      expect(lines.join('\n')).toContain('one of its files');
      expect(lines.join('\n')).toContain('another name of');
      expect(readFileSync(db).equals(before)).toBe(true);
      expect(statSync(db).nlink).toBe(2);
      expect(existsSync(`${db}-journal`)).toBe(false);
      expect(readdirSync(dir).filter((f) => f.includes('tmp'))).toEqual([]);
      expect(await store.getBuild('b000000000000001')).toMatchObject({ status: 'queued' });
    } finally {
      await store.close();
    }
  });

  it('removes its temporary file when interrupted by SIGTERM, and exits 143', async () => {
    const db = join(dir, 'controller.db');
    const store = new SqliteStore({ path: db });
    await store.migrate();
    await store.close();
    // Large enough that the copy is still being made or checked when the signal comes.
    const raw = new DatabaseSync(db);
    raw.exec('BEGIN');
    raw.prepare(`INSERT INTO builds (id, status, steps, env, labels, timeout_s, max_attempts, created_at) VALUES ('b1', 'queued', '[]', '{}', '[]', 60, 1, 1)`).run();
    const chunk = raw.prepare(`INSERT INTO log_chunks (build_id, "offset", data) VALUES ('b1', ?, randomblob(65536))`);
    for (let i = 0; i < 2000; i++) chunk.run(i * 65536);
    raw.exec('COMMIT');
    raw.close();
    const backupDir = join(dir, 'out');
    mkdirSync(backupDir);
    const p = spawn(process.execPath, [CLI, 'backup', join(backupDir, 'backup.db'), '--db', db], { env: { ...process.env }, cwd: dir });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => p.once('exit', (code, signal) => done({ code, signal })));
    let ended = false;
    void exited.then(() => (ended = true));
    // Wait for the temporary copy to appear (an awaited state), then interrupt.
    while (!ended && !readdirSync(backupDir).some((f) => f.endsWith('.tmp'))) await new Promise((r) => setTimeout(r, 10));
    expect(ended).toBe(false);
    p.kill('SIGTERM');
    expect(await exited, stderr).toEqual({ code: 143, signal: null });
    expect(readdirSync(backupDir)).toEqual([]);
  }, 120_000);

  it('backs up to a filesystem without hard links by claiming PATH exclusively, still never replacing a file that appears meanwhile', async () => {
    const db = join(dir, 'controller.db');
    const store = new SqliteStore({ path: db });
    await store.migrate();
    await store.close();
    const noLinks = (): void => {
      throw Object.assign(new Error('EPERM: operation not permitted, link'), { code: 'EPERM' });
    };
    const dest = join(dir, 'backup.db');
    const r = await backupSqlite({ dbPath: db, dest, link: noLinks });
    expect(r).toMatchObject({ path: dest, builds: 0 });
    expect(statSync(dest).mode & 0o777).toBe(0o600);
    const copy = new DatabaseSync(dest, { readOnly: true });
    try {
      expect(copy.prepare('PRAGMA integrity_check').get()).toEqual({ integrity_check: 'ok' });
    } finally {
      copy.close();
    }

    // Someone else's file appears at PATH between the check and the naming.
    const late = join(dir, 'late.db');
    const racing = (): void => {
      writeFileSync(late, 'precious');
      noLinks();
    };
    await expect(backupSqlite({ dbPath: db, dest: late, link: racing })).rejects.toMatchObject({ code: 'refused', message: expect.stringContaining('exists') });
    expect(readFileSync(late, 'utf8')).toBe('precious');
    // Any other link failure is a clean refusal, not a stack trace.
    const broken = (): void => {
      throw Object.assign(new Error('EIO: i/o error, link'), { code: 'EIO' });
    };
    await expect(backupSqlite({ dbPath: db, dest: join(dir, 'third.db'), link: broken })).rejects.toMatchObject({ code: 'failed', message: expect.stringContaining('EIO') });
    expect(readdirSync(dir).filter((f) => !f.startsWith('controller.db')).sort()).toEqual(['backup.db', 'late.db']);
  });
});
