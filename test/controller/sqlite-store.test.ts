import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/controller/store/migrations.ts';
import { SqliteStore } from '../../src/controller/store/sqlite-store.ts';
import { describeStoreConformance } from './store-conformance.ts';

describeStoreConformance('SqliteStore', () => {
  const dir = mkdtempSync(join(tmpdir(), 'expo-store-test-'));
  const path = join(dir, 'c.db');
  const open = async () => {
    const s = new SqliteStore({ path });
    await s.migrate();
    return s;
  };
  return { open, reopen: open, dispose: async () => rmSync(dir, { recursive: true, force: true }) };
});

describe('SqliteStore specifics', () => {
  it('uses WAL and records its schema version', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'expo-store-test-'));
    try {
      const s = new SqliteStore({ path: join(dir, 'c.db') });
      await s.migrate();
      await s.close();
      const db = new DatabaseSync(join(dir, 'c.db'));
      expect((db.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode).toBe('wal');
      expect(db.prepare('SELECT version FROM schema_migrations ORDER BY version').all()).toEqual(MIGRATIONS.map((m) => ({ version: m.version })));
      db.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('migration 8 keeps existing builds and deliveries: no source, deliveries still ignored with no builds', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'expo-store-test-'));
    try {
      const db = new DatabaseSync(join(dir, 'c.db'));
      db.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)');
      for (const m of MIGRATIONS.filter((m) => m.version <= 7)) {
        db.exec(m.sql);
        m.up?.(db);
        db.prepare('INSERT INTO schema_migrations VALUES (?, ?, 0)').run(m.version, m.name);
      }
      db.exec(`INSERT INTO builds (id, status, steps, env, labels, timeout_s, max_attempts, created_at) VALUES ('b1', 'queued', '[]', '{}', '[]', 60, 1, 5);
        INSERT INTO webhook_deliveries VALUES ('d1', 'push', NULL, 'octo/app', 7, 'ignored', 'no project for octo/app')`);
      db.close();
      const s = new SqliteStore({ path: join(dir, 'c.db') });
      await s.migrate();
      expect(await s.getBuild('b1')).toMatchObject({ status: 'queued', source: null, reported: null, checkRunId: null });
      expect(await s.listDeliveries(10)).toEqual([
        { id: 'd1', event: 'push', action: null, repository: 'octo/app', receivedAt: 7, outcome: 'ignored', reason: 'no project for octo/app', work: null, builds: [] },
      ]);
      expect(await s.listPendingDeliveries(10)).toEqual([]);
      expect(await s.listBuilds({ limit: 10, repo: 'octo/app' })).toEqual([]);
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a database from a newer version', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'expo-store-test-'));
    try {
      const db = new DatabaseSync(join(dir, 'c.db'));
      db.exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL);
        INSERT INTO schema_migrations VALUES (99, 'future', 0)`);
      db.close();
      const s = new SqliteStore({ path: join(dir, 'c.db') });
      await expect(s.migrate()).rejects.toThrow(/schema version 99, newer than this controller/);
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the file when it cannot open it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'expo-store-test-'));
    try {
      writeFileSync(join(dir, 'file'), '');
      expect(() => new SqliteStore({ path: join(dir, 'file', 'c.db') })).toThrow(/cannot open database .*file\/c\.db/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
