/**
 * The PostgreSQL adapter's share of access (docs/access.md): users, their sessions and API tokens,
 * the audit log, and the controller's side of workers (drain, remove). `PgStore` delegates these
 * port methods here; each is one statement or one transaction on the store's pool, with the same
 * answers as `SqliteAccess` (the conformance suite holds both to them).
 *
 * Several controllers may share the database: where SQLite's answer rests on its one writer
 * (read, then write), this one rests on a constraint (a unique violation is the "exists" answer)
 * or on a row lock taken first (`FOR UPDATE`), so two controllers never both win.
 */
import { ExpoError } from '../../protocol/errors.ts';
import type { AuditAction, Role } from '../../protocol/domain.ts';
import type pg from 'pg';
import type { PgDb } from './pg-db.ts';
import type { ApiTokenRecord, AuditRecord, NewAuditEntry, SessionRecord, UserRecord } from './store.ts';
import { toAudit, toSession, toToken, toUser } from './rows.ts';
import type { AccessMethods } from './access-methods.ts';

type Row = Record<string, unknown>;
/** The pool or a connection inside `tx`. */
type Queryable = { query: (sql: string, params?: unknown[]) => Promise<pg.QueryResult<Row>> };

const ACTIVE_SQL = `('assigned','preparing','running')`;
/** PostgreSQL's SQLSTATE for a unique violation. */
const UNIQUE_VIOLATION = '23505';

const isUniqueViolation = (e: unknown): boolean => (e as { code?: unknown } | null)?.code === UNIQUE_VIOLATION;

export class PgAccess implements AccessMethods {
  private readonly db: PgDb;

  constructor(db: PgDb) {
    this.db = db;
  }

  private async one(sql: string, params: unknown[], on: Queryable = this.db): Promise<Row | null> {
    return (await on.query(sql, params)).rows[0] ?? null;
  }

  private async count(sql: string, params: unknown[], on: Queryable = this.db): Promise<number> {
    return (await on.query(sql, params)).rowCount ?? 0;
  }

  async createUser(u: Omit<UserRecord, 'lastSignInAt'>): Promise<UserRecord> {
    try {
      await this.db.query('INSERT INTO users (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4)', [u.name, u.role, u.passwordHash, u.createdAt]);
    } catch (e) {
      if (isUniqueViolation(e)) throw new ExpoError('USER_EXISTS', `user '${u.name}' already exists`);
      throw e;
    }
    return { ...u, lastSignInAt: null };
  }

  async getUser(name: string): Promise<UserRecord | null> {
    const r = await this.one('SELECT * FROM users WHERE name = $1', [name]);
    return r ? toUser(r) : null;
  }

  async listUsers(): Promise<UserRecord[]> {
    // COLLATE "C": byte order, as SQLite's BINARY sorts, whatever the database's locale.
    return (await this.db.query<Row>('SELECT * FROM users ORDER BY name COLLATE "C"')).rows.map(toUser);
  }

  async deleteUser(name: string): Promise<boolean> {
    // ON DELETE CASCADE takes the sessions and tokens in the same statement.
    return (await this.count('DELETE FROM users WHERE name = $1', [name])) === 1;
  }

  async setUserPassword(name: string, passwordHash: string): Promise<boolean> {
    return this.db.tx(async (c) => {
      const changed = (await this.count('UPDATE users SET password_hash = $1 WHERE name = $2', [passwordHash, name], c)) === 1;
      if (changed) await c.query('DELETE FROM sessions WHERE user_name = $1', [name]);
      return changed;
    });
  }

  async setUserRole(name: string, role: Role): Promise<Role | null> {
    return this.db.tx(async (c) => {
      // The row lock makes "the role before" this call's own, when two set it at once.
      const r = await this.one('SELECT role FROM users WHERE name = $1 FOR UPDATE', [name], c);
      if (!r) return null;
      await c.query('UPDATE users SET role = $1 WHERE name = $2', [role, name]);
      return r.role as Role;
    });
  }

  async deleteExpiredSessions(now: number): Promise<number> {
    return this.count('DELETE FROM sessions WHERE expires_at <= $1', [now]);
  }

  async recordSignIn(name: string, now: number): Promise<void> {
    await this.db.query('UPDATE users SET last_sign_in_at = $1 WHERE name = $2', [now, name]);
  }

  async createSession(s: SessionRecord): Promise<void> {
    await this.db.query('INSERT INTO sessions (id_hash, user_name, created_at, expires_at) VALUES ($1, $2, $3, $4)', [s.idHash, s.userName, s.createdAt, s.expiresAt]);
  }

  async getSession(idHash: string, now: number): Promise<{ session: SessionRecord; user: UserRecord } | null> {
    // One statement reads the session with its user: no second round trip, no gap between them.
    const r = await this.one(
      `SELECT s.id_hash, s.user_name, s.created_at AS s_created_at, s.expires_at,
              u.name, u.role, u.password_hash, u.created_at, u.last_sign_in_at
         FROM sessions s LEFT JOIN users u ON u.name = s.user_name
        WHERE s.id_hash = $1`,
      [idHash],
    );
    if (!r) return null;
    const session = toSession({ ...r, created_at: r.s_created_at });
    if (session.expiresAt <= now) {
      await this.db.query('DELETE FROM sessions WHERE id_hash = $1', [idHash]);
      return null;
    }
    return r.name === null ? null : { session, user: toUser(r) };
  }

  async deleteSession(idHash: string): Promise<boolean> {
    return (await this.count('DELETE FROM sessions WHERE id_hash = $1', [idHash])) === 1;
  }

  async deleteSessionsOfUser(name: string): Promise<number> {
    return this.count('DELETE FROM sessions WHERE user_name = $1', [name]);
  }

  async createApiToken(t: ApiTokenRecord): Promise<void> {
    try {
      await this.db.query(
        'INSERT INTO api_tokens (id, name, role, owner, secret_hash, created_at, expires_at, last_used_at, revoked_at, admin_epoch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)',
        [t.id, t.name, t.role, t.owner, t.secretHash, t.createdAt, t.expiresAt, t.lastUsedAt, t.revokedAt, t.adminEpoch],
      );
    } catch (e) {
      // Ids and secrets are random (docs/access.md): a clash is a bug or an attack, never a name taken.
      if (isUniqueViolation(e)) throw new ExpoError('STORE_CONFLICT', `API token '${t.id}' already exists`);
      throw e;
    }
  }

  async getApiTokenBySecretHash(secretHash: string): Promise<{ token: ApiTokenRecord; owner: UserRecord | null } | null> {
    const r = await this.one('SELECT * FROM api_tokens WHERE secret_hash = $1', [secretHash]);
    if (!r) return null;
    const token = toToken(r);
    return { token, owner: token.owner === null ? null : await this.getUser(token.owner) };
  }

  async getApiToken(id: string): Promise<ApiTokenRecord | null> {
    const r = await this.one('SELECT * FROM api_tokens WHERE id = $1', [id]);
    return r ? toToken(r) : null;
  }

  async listApiTokens(owner?: string | null): Promise<ApiTokenRecord[]> {
    const order = 'ORDER BY created_at DESC, id COLLATE "C"';
    const res =
      owner === undefined ? await this.db.query<Row>(`SELECT * FROM api_tokens ${order}`)
      : owner === null ? await this.db.query<Row>(`SELECT * FROM api_tokens WHERE owner IS NULL ${order}`)
      : await this.db.query<Row>(`SELECT * FROM api_tokens WHERE owner = $1 ${order}`, [owner]);
    return res.rows.map(toToken);
  }

  async revokeApiToken(id: string, now: number): Promise<boolean> {
    return (await this.count('UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL', [now, id])) === 1;
  }

  async touchApiToken(id: string, now: number): Promise<void> {
    await this.db.query('UPDATE api_tokens SET last_used_at = $1 WHERE id = $2', [now, id]);
  }

  async appendAudit(e: NewAuditEntry): Promise<void> {
    await this.db.query('INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)', [e.at, e.actor, e.action, e.target, e.detail]);
  }

  async listAudit(q: { limit: number; beforeId?: number; action?: AuditAction }): Promise<AuditRecord[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.beforeId !== undefined) {
      args.push(q.beforeId);
      where.push(`id < $${args.length}`);
    }
    if (q.action !== undefined) {
      args.push(q.action);
      where.push(`action = $${args.length}`);
    }
    args.push(q.limit);
    const sql = `SELECT * FROM audit_log ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT $${args.length}`;
    return (await this.db.query<Row>(sql, args)).rows.map(toAudit);
  }

  async setWorkerDrainRequested(id: string, drainRequested: boolean): Promise<boolean> {
    return (await this.count('UPDATE workers SET drain_requested = $1 WHERE id = $2', [Number(drainRequested), id])) === 1;
  }

  async deleteWorker(id: string): Promise<'removed' | 'busy' | 'missing'> {
    // Builds and attempts keep a removed worker's id without a foreign key (pg-schema.ts), so
    // nothing is switched off here. The worker's row is locked first: a claim for it that
    // commits meanwhile is waited for and then seen by the busy check.
    return this.db.tx(async (c) => {
      if (!(await this.one('SELECT 1 FROM workers WHERE id = $1 FOR UPDATE', [id], c))) return 'missing';
      if (await this.one(`SELECT 1 FROM builds WHERE worker_id = $1 AND status IN ${ACTIVE_SQL} LIMIT 1`, [id], c)) return 'busy';
      await c.query('DELETE FROM workers WHERE id = $1', [id]);
      return 'removed';
    });
  }
}
