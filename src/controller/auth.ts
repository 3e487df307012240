/**
 * Credentials and who a request acts as. People and scripts act with a role (docs/access.md):
 * the **admin key** (from the controller's config) is admin; an **API token** (`ewt_…`) and a
 * dashboard **session** (cookie) act with their role (see access-service.ts, which resolves
 * every kind). Machines have narrow scopes instead:
 * - a **worker key** (`ewk_…`, made by `POST /api/v1/workers`, shown once, stored as a SHA-256
 *   hash): acts only as its own worker and on builds that worker holds;
 * - a **build token** (`ewb_…`, handed out with each attempt, stored hashed): only that build's
 *   heartbeats, and only until the attempt ends.
 * Secrets are 256-bit random, so a plain SHA-256 is a safe, fast hash for them; the admin key is
 * compared in constant time.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ExpoError } from '../protocol/errors.ts';
import { roleAtLeast, type Role } from '../protocol/domain.ts';
import type { ApiTokenRecord, AttemptRecord, SessionRecord, UserRecord, WorkerRecord } from './store/store.ts';

/**
 * Who a request acts as. People and scripts have a role (`roleOf`): the admin key is admin; an
 * API token has its own role capped by its owner's current role; a dashboard session has its
 * user's role and carries the CSRF token its forms must send back. Workers and builds have none.
 */
export type Principal =
  | { kind: 'admin' }
  | { kind: 'token'; token: ApiTokenRecord; owner: UserRecord | null; role: Role }
  | { kind: 'session'; session: SessionRecord; user: UserRecord; csrfToken: string }
  | { kind: 'worker'; worker: WorkerRecord }
  /**
   * A build token. `attempt` may be as it was when the token was first seen (the access
   * service caches running attempts): rely only on what never changes for an attempt (build,
   * worker, lease, token digest), never on its ending.
   */
  | { kind: 'build'; attempt: AttemptRecord };

/** The role a principal acts with; null for a worker key or a build token. */
export function roleOf(p: Principal): Role | null {
  switch (p.kind) {
    case 'admin':
      return 'admin';
    case 'token':
      return p.role;
    case 'session':
      return p.user.role;
    default:
      return null;
  }
}

/** Who did it, in the audit log's words: `admin key`, `user alice`, `token ci-release (alice)`. */
export function actorOf(p: Principal): string {
  switch (p.kind) {
    case 'admin':
      return 'admin key';
    case 'token':
      return `token ${p.token.name} (${p.owner?.name ?? 'admin key'})`;
    case 'session':
      return `user ${p.user.name}`;
    case 'worker':
      return `worker ${p.worker.id}`;
    case 'build':
      return `build ${p.attempt.buildId}`;
  }
}

export const hashSecret = (secret: string): string => createHash('sha256').update(secret).digest('hex');

/** `prefix` and `bytes` random bytes in base64url. */
export const newSecret = (prefix: string, bytes: number): string => `${prefix}${randomBytes(bytes).toString('base64url')}`;
export const newWorkerKey = (): string => newSecret('ewk_', 32);
export const newBuildToken = (): string => newSecret('ewb_', 32);
export const newLease = (): string => newSecret('ewl_', 18);

/** Build ids: 16 characters of lower-case base 32 (80 random bits), safe in VM names and URLs. */
export function newBuildId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  const bytes = randomBytes(16);
  let id = '';
  for (const b of bytes) id += alphabet[b & 31];
  return id;
}

const sha256 = (secret: string): Buffer => createHash('sha256').update(secret).digest();

/** The admin key's digest, computed once at start; requests compare against it. */
export const adminKeyDigest = (adminKey: string): Buffer => sha256(adminKey);

export function bearerToken(header: string | undefined): string {
  if (header === undefined || header === '') {
    throw new ExpoError('AUTH_MISSING', 'missing Authorization header: send "Authorization: Bearer <key>"');
  }
  const m = /^Bearer +([^\s]+)\s*$/i.exec(header);
  if (!m) throw new ExpoError('AUTH_MISSING', 'malformed Authorization header: expected "Bearer <key>"');
  return m[1]!;
}

/** The caller's role, when it is at least `need`; AUTH_FORBIDDEN otherwise (worker keys and build tokens have none). */
export function requireRole(p: Principal, need: Role): Role {
  const have = roleOf(p);
  if (have === null) throw new ExpoError('AUTH_FORBIDDEN', `this call needs a person's or script's credential of role ${need} or above, not a ${p.kind} key`);
  if (!roleAtLeast(have, need)) throw new ExpoError('AUTH_FORBIDDEN', `this call needs role ${need} or above; the caller is ${have}`);
  return have;
}

export function requireWorker(p: Principal, workerId: string): WorkerRecord {
  if (p.kind !== 'worker') throw new ExpoError('AUTH_FORBIDDEN', 'this call needs the worker key of the worker named in the URL');
  if (p.worker.id !== workerId) throw new ExpoError('AUTH_FORBIDDEN', `this key belongs to worker '${p.worker.id}', not '${workerId}'`);
  return p.worker;
}

export function requireAnyWorker(p: Principal): WorkerRecord {
  if (p.kind !== 'worker') throw new ExpoError('AUTH_FORBIDDEN', "this call needs the key of the build's worker");
  return p.worker;
}
