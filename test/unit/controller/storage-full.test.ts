import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExpoError } from '../../../src/protocol/errors.ts';
import { describeStorageFull } from '../../../src/controller/storage-full.ts';
import { sqliteDiskError } from '../../../src/controller/store/sqlite-errors.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'expo-storage-full-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The shape node:sqlite gives its errors. */
const sqliteError = (errcode: number, errstr: string) => Object.assign(new Error(errstr), { code: 'ERR_SQLITE_ERROR', errcode, errstr });

describe('describeStorageFull', () => {
  it('takes SQLITE_FULL for a full disk and names the data directory', async () => {
    const full = await describeStorageFull(sqliteError(13, 'database or disk is full'), dir, sqliteDiskError);
    expect(full?.summary).toContain('disk full (ENOSPC, SQLITE_FULL)');
    expect(full?.summary).toContain(dir);
    expect(full?.fields).toMatchObject({ diskFull: true, errno: 'ENOSPC', sqliteCode: 'SQLITE_FULL', dataDir: dir });
  });

  it('finds it along the cause chain (a STORE_FAILED wrapping it)', async () => {
    const wrapped = new ExpoError('STORE_FAILED', 'write failed', { cause: sqliteError(13, 'database or disk is full') });
    expect(await describeStorageFull(wrapped, dir, sqliteDiskError)).not.toBeNull();
  });

  it('names the file of an ENOSPC from a file write, which may be on another disk', async () => {
    const err = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', path: join(dir, 'artifacts', 'b1', 'app.ipa') });
    const full = await describeStorageFull(err, '/elsewhere', sqliteDiskError);
    expect(full?.summary).toContain(join(dir, 'artifacts', 'b1', 'app.ipa'));
  });

  it('does not take an I/O error on a disk with room for a full disk, nor any other error', async () => {
    expect(await describeStorageFull(sqliteError(778, 'disk I/O error'), dir, sqliteDiskError)).toBeNull();
    expect(await describeStorageFull(sqliteError(19, 'UNIQUE constraint failed'), dir, sqliteDiskError)).toBeNull();
    expect(await describeStorageFull(new Error('boom'), dir, sqliteDiskError)).toBeNull();
    expect(await describeStorageFull('not even an error', dir, sqliteDiskError)).toBeNull();
  });
});
