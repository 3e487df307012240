/**
 * The SQLite adapter's share of access (docs/access.md): users, their sessions and API tokens,
 * the audit log, and the controller's side of workers (drain, remove). `SqliteStore` delegates
 * these port methods here; each is one statement or one `BEGIN IMMEDIATE` transaction, on the
 * store's own connection and statement cache.
 */
import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import { ExpoError } from '../../protocol/errors.ts';
import type { AuditAction, Role } from '../../protocol/domain.ts';
import type { ApiTokenRecord, AuditRecord, NewAuditEntry, SessionRecord, UserRecord } from './store.ts';
import { toAudit, toSession, toToken, toUser } from './rows.ts';
import type { AccessMethods } from './access-methods.ts';

type Row = Record<string, SQLInputValue>;

const ACTIVE_SQL = `('assigned','preparing','running')`;

/** What the access methods need of the store: its connection, statement cache and transaction. */
export interface SqliteParts {
  db: DatabaseSync;
  q: (sql: string) => StatementSync;
  tx: <T>(fn: () => T) => T;
}

export class SqliteAccess implements AccessMethods {
  private readonly p: SqliteParts;

  constructor(parts: SqliteParts) {
    this.p = parts;
  }

  async createUser(u: Omit<UserRecord, 'lastSignInAt'>): Promise<UserRecord> {
    return this.p.tx(() => {
      if (this.p.q('SELECT 1 FROM users WHERE name = ?').get(u.name)) throw new ExpoError('USER_EXISTS', `user '${u.name}' already exists`);
      this.p.q('INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)').run(u.name, u.role, u.passwordHash, u.createdAt);
      return { ...u, lastSignInAt: null };
    });
  }

  async getUser(name: string): Promise<UserRecord | null> {
    const r = this.p.q('SELECT * FROM users WHERE name = ?').get(name) as Row | undefined;
    return r ? toUser(r) : null;
  }

  async listUsers(): Promise<UserRecord[]> {
    return (this.p.q('SELECT * FROM users ORDER BY name').all() as Row[]).map(toUser);
  }

  async deleteUser(name: string): Promise<boolean> {
    // ON DELETE CASCADE takes the sessions and tokens; spelled out too, so the port's promise
    // does not hang on the connection's foreign_keys setting.
    return this.p.tx(() => {
      this.p.q('DELETE FROM sessions WHERE user_name = ?').run(name);
      this.p.q('DELETE FROM api_tokens WHERE owner = ?').run(name);
      return Number(this.p.q('DELETE FROM users WHERE name = ?').run(name).changes) === 1;
    });
  }

  async setUserPassword(name: string, passwordHash: string): Promise<boolean> {
    return this.p.tx(() => {
      const changed = Number(this.p.q('UPDATE users SET password_hash = ? WHERE name = ?').run(passwordHash, name).changes) === 1;
      if (changed) this.p.q('DELETE FROM sessions WHERE user_name = ?').run(name);
      return changed;
    });
  }

  async setUserRole(name: string, role: Role): Promise<Role | null> {
    return this.p.tx(() => {
      const r = this.p.q('SELECT role FROM users WHERE name = ?').get(name) as Row | undefined;
      if (!r) return null;
      this.p.q('UPDATE users SET role = ? WHERE name = ?').run(role, name);
      return r.role as Role;
    });
  }

  async deleteExpiredSessions(now: number): Promise<number> {
    return Number(this.p.q('DELETE FROM sessions WHERE expires_at <= ?').run(now).changes);
  }

  async recordSignIn(name: string, now: number): Promise<void> {
    this.p.q('UPDATE users SET last_sign_in_at = ? WHERE name = ?').run(now, name);
  }

  async createSession(s: SessionRecord): Promise<void> {
    this.p.q('INSERT INTO sessions (id_hash, user_name, created_at, expires_at) VALUES (?, ?, ?, ?)').run(s.idHash, s.userName, s.createdAt, s.expiresAt);
  }

  async getSession(idHash: string, now: number): Promise<{ session: SessionRecord; user: UserRecord } | null> {
    const r = this.p.q('SELECT * FROM sessions WHERE id_hash = ?').get(idHash) as Row | undefined;
    if (!r) return null;
    const session = toSession(r);
    if (session.expiresAt <= now) {
      this.p.q('DELETE FROM sessions WHERE id_hash = ?').run(idHash);
      return null;
    }
    const user = await this.getUser(session.userName);
    return user ? { session, user } : null;
  }

  async deleteSession(idHash: string): Promise<boolean> {
    return Number(this.p.q('DELETE FROM sessions WHERE id_hash = ?').run(idHash).changes) === 1;
  }

  async deleteSessionsOfUser(name: string): Promise<number> {
    return Number(this.p.q('DELETE FROM sessions WHERE user_name = ?').run(name).changes);
  }

  async createApiToken(t: ApiTokenRecord): Promise<void> {
    this.p
      .q('INSERT INTO api_tokens (id, name, role, owner, secret_hash, created_at, expires_at, last_used_at, revoked_at, admin_epoch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(t.id, t.name, t.role, t.owner, t.secretHash, t.createdAt, t.expiresAt, t.lastUsedAt, t.revokedAt, t.adminEpoch);
  }

  async getApiTokenBySecretHash(secretHash: string): Promise<{ token: ApiTokenRecord; owner: UserRecord | null } | null> {
    const r = this.p.q('SELECT * FROM api_tokens WHERE secret_hash = ?').get(secretHash) as Row | undefined;
    if (!r) return null;
    const token = toToken(r);
    return { token, owner: token.owner === null ? null : await this.getUser(token.owner) };
  }

  async getApiToken(id: string): Promise<ApiTokenRecord | null> {
    const r = this.p.q('SELECT * FROM api_tokens WHERE id = ?').get(id) as Row | undefined;
    return r ? toToken(r) : null;
  }

  async listApiTokens(owner?: string | null): Promise<ApiTokenRecord[]> {
    const rows =
      owner === undefined ? this.p.q('SELECT * FROM api_tokens ORDER BY created_at DESC, id').all()
      : owner === null ? this.p.q('SELECT * FROM api_tokens WHERE owner IS NULL ORDER BY created_at DESC, id').all()
      : this.p.q('SELECT * FROM api_tokens WHERE owner = ? ORDER BY created_at DESC, id').all(owner);
    return (rows as Row[]).map(toToken);
  }

  async revokeApiToken(id: string, now: number): Promise<boolean> {
    return Number(this.p.q('UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(now, id).changes) === 1;
  }

  async touchApiToken(id: string, now: number): Promise<void> {
    this.p.q('UPDATE api_tokens SET last_used_at = ? WHERE id = ?').run(now, id);
  }

  async appendAudit(e: NewAuditEntry): Promise<void> {
    this.p.q('INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)').run(e.at, e.actor, e.action, e.target, e.detail);
  }

  async listAudit(q: { limit: number; beforeId?: number; action?: AuditAction }): Promise<AuditRecord[]> {
    const where: string[] = [];
    const args: SQLInputValue[] = [];
    if (q.beforeId !== undefined) {
      where.push('id < ?');
      args.push(q.beforeId);
    }
    if (q.action !== undefined) {
      where.push('action = ?');
      args.push(q.action);
    }
    const sql = `SELECT * FROM audit_log ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`;
    return (this.p.q(sql).all(...args, q.limit) as Row[]).map(toAudit);
  }

  async setWorkerDrainRequested(id: string, drainRequested: boolean): Promise<boolean> {
    return Number(this.p.q('UPDATE workers SET drain_requested = ? WHERE id = ?').run(Number(drainRequested), id).changes) === 1;
  }

  async deleteWorker(id: string): Promise<'removed' | 'busy' | 'missing'> {
    // Its finished builds and attempts keep its id (the record of who ran them), which their
    // foreign keys would refuse: the check is off for this one transaction. The pragma is a no-op
    // inside a transaction, so it is set around it; the connection is this store's alone and its
    // calls are synchronous, so no other statement runs meanwhile. The deletes are compiled
    // fresh (`exec`-style prepare), never from the cache, so none keeps the checking code.
    this.p.db.exec('PRAGMA foreign_keys = OFF');
    try {
      return this.p.tx(() => {
        if (!this.p.q('SELECT 1 FROM workers WHERE id = ?').get(id)) return 'missing';
        if (this.p.q(`SELECT 1 FROM builds WHERE worker_id = ? AND status IN ${ACTIVE_SQL} LIMIT 1`).get(id)) return 'busy';
        this.p.db.prepare('DELETE FROM workers WHERE id = ?').run(id);
        return 'removed';
      });
    } finally {
      this.p.db.exec('PRAGMA foreign_keys = ON');
    }
  }
}
