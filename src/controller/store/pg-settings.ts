/**
 * Settings every controller on one PostgreSQL database shares (`cluster_settings`, schema
 * version 2). The one setting so far is the fingerprint of `secret-env.key`: controllers that
 * seal builds' secrets with different keys cannot open each other's, so a controller whose key
 * is not the one the database already knows refuses to start, instead of silently making a key
 * of its own (docs/operations.md#ha-several-controllers).
 */
import { existsSync } from 'node:fs';
import { ExpoError } from '../../protocol/errors.ts';
import type { PgDb } from './pg-db.ts';

/** The row in `cluster_settings` holding the key's fingerprint (`SecretBox.fingerprint()`). */
export const KEY_FINGERPRINT_SETTING = 'secret_env_key_fingerprint';

const HA_DOCS = 'docs/operations.md#ha-several-controllers';

/** The fingerprint the database knows, or null when no controller has recorded one yet. */
export async function storedKeyFingerprint(db: PgDb): Promise<string | null> {
  const r = await db.query<{ value: string }>('SELECT value FROM cluster_settings WHERE name = $1', [KEY_FINGERPRINT_SETTING]);
  return r.rows[0]?.value ?? null;
}

/**
 * Records `fingerprint` unless one is there already, and returns the one the database keeps.
 * Atomic: of two controllers starting together with different keys, one wins and the other
 * gets the winner's fingerprint back.
 */
export async function recordKeyFingerprint(db: PgDb, fingerprint: string): Promise<string> {
  const inserted = await db.query<{ value: string }>('INSERT INTO cluster_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING value', [KEY_FINGERPRINT_SETTING, fingerprint]);
  if (inserted.rows[0] !== undefined) return inserted.rows[0].value;
  // The conflicting row is committed (ON CONFLICT waited for it); this new statement sees it.
  const stored = await storedKeyFingerprint(db);
  if (stored === null) throw new ExpoError('STORE_FAILED', 'the secret-env key fingerprint vanished while it was being recorded');
  return stored;
}

/**
 * The secret box of this controller, checked against the database's fingerprint. Before the key
 * file would be created: a missing key on a database that knows one is refused (the operator
 * forgot to copy it). Then the key is loaded (or made), its fingerprint recorded if none is,
 * and a key that differs from the recorded one is refused. Refusals are `CFG_INVALID`.
 */
export async function agreeOnSecretKey<B extends { fingerprint(): string }>(db: PgDb, keyFile: string, load: () => B): Promise<B> {
  if (!existsSync(keyFile) && (await storedKeyFingerprint(db)) !== null) {
    throw new ExpoError(
      'CFG_INVALID',
      `${keyFile} is missing, and the controllers on this database already seal builds' secrets with a key: copy secret-env.key from another controller into --data-dir (${keyFile}), then start again (see ${HA_DOCS})`,
    );
  }
  const box = load();
  const stored = await recordKeyFingerprint(db, box.fingerprint());
  if (stored !== box.fingerprint()) {
    throw new ExpoError(
      'CFG_INVALID',
      `${keyFile} is not the key the other controllers on this database use (its fingerprint differs): copy secret-env.key from another controller into --data-dir (${keyFile}), replacing this one, then start again (see ${HA_DOCS})`,
    );
  }
  return box;
}
