/**
 * The SQLite adapter of the Store port, on Node's built-in `node:sqlite`. One connection, WAL
 * journal (readers never block the writer), `synchronous=NORMAL` (a committed write survives a
 * crash of the controller process; only a power loss can roll back the last moments), a busy
 * timeout for other processes holding the file (backups), foreign keys on. Each port operation
 * is a single statement or one `BEGIN IMMEDIATE` transaction, and the calls are synchronous
 * underneath, so no two operations interleave.
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
import { ExpoError } from '../../protocol/errors.ts';
import { BUILD_STATUSES, type ActiveBuildStatus, type BuildStatus } from '../../protocol/domain.ts';
import type { ArtifactProblem } from '../../protocol/schemas.ts';
import { MIGRATIONS } from './migrations.ts';
import { createPrivateFile } from './data-dir.ts';
import type {
  AppendLogResult,
  ArtifactRecord,
  AttemptEnd,
  AttemptRecord,
  BuildPulse,
  BuildRecord,
  Claim,
  ClaimRequest,
  DeliveryOutcome,
  DeliveryRecord,
  ListBuildsFilter,
  NewBuild,
  NewWorker,
  DeadlineQuery,
  PendingDeliveryFilter,
  OverdueQuery,
  NewProject,
  PrunableBuild,
  ProjectRecord,
  ProjectSecretRecord,
  ReportStage,
  Store,
  StoreDiskError,
  WorkerRecord,
} from './store.ts';
import { sqliteDiskError } from './sqlite-errors.ts';
import { SqliteAccess } from './sqlite-access.ts';
import { delegateAccess, type AccessMethods } from './access-methods.ts';
import { listBuildsWhere, stepStarts, toArtifact, toAttempt, toBuild, toDelivery, toProject, toWorker } from './rows.ts';
import { asSubmitted, labelsMatch, newAttempt, newBuildValues } from './submit-claim.ts';
import { TouchBatch, type TouchRow } from './touch-batch.ts';

type Row = Record<string, SQLInputValue>;

const ACTIVE_SQL = `('assigned','preparing','running')`;

/** How soon a WAL truncation that readers held off is tried again, ms. */
const WAL_RETRY_MS = 2000;

export interface SqliteStoreOptions {
  /** Database file, or `:memory:`. */
  path: string;
  /** How long to wait for another connection's lock, in ms. Default 5000. */
  busyTimeoutMs?: number;
}

/** The access methods, answered by `SqliteAccess` (set up in the constructor by `delegateAccess`). */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging, @typescript-eslint/no-empty-object-type
export interface SqliteStore extends AccessMethods {}

// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class SqliteStore implements Store {
  private readonly db: DatabaseSync;
  private readonly statements = new Map<string, StatementSync>();
  private readonly busyTimeoutMs: number;
  /** A retry of a WAL truncation that readers held off (see `dropOldWalFrames`). */
  private walRetry: NodeJS.Timeout | null = null;
  /** Users, sessions, tokens, audit, drain and removal of workers. */
  private readonly access: SqliteAccess;
  /** Heartbeat touches of one event-loop turn, written in one transaction. */
  private readonly touches = new TouchBatch((rows) => this.touchMany(rows));

  constructor(options: SqliteStoreOptions) {
    this.busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    try {
      // Created private (SQLite gives -wal and -shm the database file's mode).
      if (options.path !== ':memory:' && !options.path.startsWith('file:')) createPrivateFile(options.path);
      this.db = new DatabaseSync(options.path, { timeout: this.busyTimeoutMs });
      // secure_delete: erased secrets and pruned logs are overwritten, not left in free pages.
      this.db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;');
    } catch (cause) {
      throw new ExpoError('STORE_FAILED', `cannot open database ${options.path}: ${(cause as Error).message}`, { cause });
    }
    this.access = new SqliteAccess({ db: this.db, q: (sql) => this.q(sql), tx: (fn) => this.tx(fn) });
    delegateAccess(this, this.access);
  }

  private q(sql: string): StatementSync {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  private tx<T>(fn: () => T): T {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const result = fn();
      this.db.exec('COMMIT');
      return result;
    } catch (err) {
      // SQLite rolls back by itself on some errors (SQLITE_FULL among them): a second ROLLBACK
      // would fail and hide the error that matters.
      if (this.db.isTransaction) this.db.exec('ROLLBACK');
      throw err;
    }
  }

  async migrate(): Promise<void> {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)');
    const row = this.db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null };
    const current = row.v ?? 0;
    const latest = MIGRATIONS.at(-1)?.version ?? 0;
    if (current > latest) {
      throw new ExpoError('STORE_FAILED', `the database is at schema version ${current}, newer than this controller (${latest}); upgrade expo-worker`);
    }
    for (const m of MIGRATIONS.filter((m) => m.version > current)) {
      this.tx(() => {
        if (m.sql !== '') this.db.exec(m.sql);
        m.up?.(this.db);
        this.db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, Date.now());
      });
    }
  }

  diskError(err: unknown): StoreDiskError | null {
    return sqliteDiskError(err);
  }

  async close(): Promise<void> {
    if (!this.db.isOpen) return;
    await this.touches.flush();
    if (this.walRetry) clearTimeout(this.walRetry);
    this.walRetry = null;
    this.statements.clear();
    this.db.close();
  }

  // ---- workers ----

  async createWorker(w: NewWorker): Promise<WorkerRecord> {
    const exists = this.q('SELECT 1 FROM workers WHERE id = ?').get(w.id);
    if (exists) throw new ExpoError('WORKER_EXISTS', `worker '${w.id}' already exists`);
    this.q('INSERT INTO workers (id, labels, key_hash, created_at) VALUES (?, ?, ?, ?)').run(w.id, JSON.stringify(w.labels), w.keyHash, w.createdAt);
    return (await this.getWorker(w.id))!;
  }

  async getWorker(id: string): Promise<WorkerRecord | null> {
    const r = this.q('SELECT * FROM workers WHERE id = ?').get(id) as Row | undefined;
    return r ? toWorker(r) : null;
  }

  async getWorkerByKeyHash(keyHash: string): Promise<WorkerRecord | null> {
    const r = this.q('SELECT * FROM workers WHERE key_hash = ?').get(keyHash) as Row | undefined;
    return r ? toWorker(r) : null;
  }

  async listWorkers(): Promise<WorkerRecord[]> {
    return (this.q('SELECT * FROM workers ORDER BY id').all() as Row[]).map(toWorker);
  }

  async touchWorker(id: string, c: { now: number; slotsTotal?: number; draining?: boolean }): Promise<void> {
    this.q(
      `UPDATE workers SET last_seen_at = ?, offline = 0,
         slots_total = COALESCE(?, slots_total), draining = COALESCE(?, draining) WHERE id = ?`,
    ).run(c.now, c.slotsTotal ?? null, c.draining === undefined ? null : Number(c.draining), id);
  }

  async touchWorkers(ids: readonly string[], now: number): Promise<void> {
    if (ids.length === 0) return;
    this.q('UPDATE workers SET last_seen_at = ?, offline = 0 WHERE id IN (SELECT value FROM json_each(?))').run(now, JSON.stringify(ids));
  }

  async markWorkerOffline(id: string, silentBefore?: number): Promise<boolean> {
    const r = this.q('UPDATE workers SET offline = 1 WHERE id = ? AND offline = 0 AND (? IS NULL OR last_seen_at < ?)').run(id, silentBefore ?? null, silentBefore ?? null);
    return r.changes === 1;
  }

  async findSilentWorkers(cutoff: number): Promise<WorkerRecord[]> {
    const rows = this.q('SELECT * FROM workers WHERE offline = 0 AND last_seen_at IS NOT NULL AND last_seen_at < ?').all(cutoff) as Row[];
    return rows.map(toWorker);
  }

  // ---- builds ----

  async createBuild(b: NewBuild): Promise<BuildRecord> {
    // In a transaction: a statement with RETURNING answers its row before its autocommit commits,
    // and a failed commit (a full disk) would then go unnoticed; COMMIT reports it.
    return toBuild(this.tx(() => this.insertBuild(b, null)));
  }

  async createAndClaim(b: NewBuild, req: ClaimRequest): Promise<{ build: BuildRecord; claim: Claim | null }> {
    return this.tx(() => {
      const takes = labelsMatch(b.labels, req.workerLabels) && this.takesNow(req);
      const row = toBuild(this.insertBuild(b, takes ? req : null));
      if (!takes) return { build: row, claim: null };
      this.q(
        `INSERT INTO attempts (build_id, attempt, worker_id, lease, build_token_hash, claimed_at, log_offset)
         VALUES (?, 1, ?, ?, ?, ?, 0)`,
      ).run(b.id, req.workerId, req.lease, req.buildTokenHash, req.now);
      return { build: asSubmitted(row), claim: { build: row, attempt: newAttempt(req, b.id, 1, 0) } };
    });
  }

  /**
   * Whether the worker of `req` takes a build now (inside the caller's transaction): it exists,
   * is not drained, and no queued build it could take is older (the new one is not written yet).
   */
  private takesNow(req: ClaimRequest): boolean {
    const worker = this.q('SELECT drain_requested FROM workers WHERE id = ?').get(req.workerId) as Row | undefined;
    if (worker === undefined || worker.drain_requested === 1) return false;
    // Each distinct label set once: a long queue for other labels is mostly a few sets repeated.
    for (const r of this.q(`SELECT DISTINCT labels FROM builds WHERE status = 'queued'`).iterate() as Iterable<Row>) {
      if (labelsMatch(JSON.parse(r.labels as string) as string[], req.workerLabels)) return false;
    }
    return true;
  }

  /** Writes a new build, queued, or with `claim` already its first attempt's (the attempts row is the caller's); answers the row. */
  private insertBuild(b: NewBuild, claim: ClaimRequest | null): Row {
    return this.q(
      `INSERT INTO builds (id, steps, env, secret_env, secret_env_names, labels, artifacts, timeout_s, max_attempts, created_at,
         source, source_project, source_repo_key, source_ref, source_sha, status, attempt, worker_id, lease, assigned_at, last_heartbeat_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
    ).get(
      ...newBuildValues(b),
      claim === null ? 'queued' : 'assigned',
      claim === null ? 0 : 1,
      claim?.workerId ?? null,
      claim?.lease ?? null,
      claim?.now ?? null,
      claim?.now ?? null,
    ) as Row;
  }

  async getBuild(id: string): Promise<BuildRecord | null> {
    const r = this.q('SELECT * FROM builds WHERE id = ?').get(id) as Row | undefined;
    return r ? toBuild(r) : null;
  }

  async listBuilds(f: ListBuildsFilter): Promise<BuildRecord[]> {
    const given = listBuildsWhere(f);
    const where = given.map(([col]) => `${col} = ?`);
    const args = given.map(([, value]) => value);
    const sql = `SELECT * FROM builds ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ?`;
    return (this.q(sql).all(...args, f.limit) as Row[]).map(toBuild);
  }

  async countBuildsByStatus(): Promise<Record<BuildStatus, number>> {
    const counts = Object.fromEntries(BUILD_STATUSES.map((s) => [s, 0])) as Record<BuildStatus, number>;
    for (const r of this.q('SELECT status, COUNT(*) AS n FROM builds GROUP BY status').all() as Row[]) {
      counts[r.status as BuildStatus] = r.n as number;
    }
    return counts;
  }

  async countQueuedBuilds(): Promise<number> {
    return (this.q(`SELECT COUNT(*) AS n FROM builds WHERE status = 'queued'`).get() as { n: number }).n;
  }

  async activeBuildsOfWorker(workerId: string): Promise<BuildRecord[]> {
    const rows = this.q(`SELECT * FROM builds WHERE worker_id = ? AND status IN ${ACTIVE_SQL} ORDER BY seq`).all(workerId) as Row[];
    return rows.map(toBuild);
  }

  async activeBuildsByWorker(): Promise<Map<string, BuildRecord[]>> {
    const byWorker = new Map<string, BuildRecord[]>();
    for (const r of this.q(`SELECT * FROM builds WHERE status IN ${ACTIVE_SQL} AND worker_id IS NOT NULL ORDER BY seq`).all() as Row[]) {
      const b = toBuild(r);
      const list = byWorker.get(b.workerId!) ?? [];
      list.push(b);
      byWorker.set(b.workerId!, list);
    }
    return byWorker;
  }

  async findStaleBuilds(cutoff: number): Promise<BuildRecord[]> {
    const rows = this.q(`SELECT * FROM builds WHERE status IN ${ACTIVE_SQL} AND last_heartbeat_at < ? ORDER BY seq`).all(cutoff) as Row[];
    return rows.map(toBuild);
  }

  async claimBuild(req: ClaimRequest): Promise<Claim | null> {
    return this.tx(() => {
      // A worker removed or drained since its poll began takes nothing: checked in the claim's
      // own transaction, so a drain that an operator was told about cannot lose to a claim.
      const worker = this.q('SELECT drain_requested FROM workers WHERE id = ?').get(req.workerId) as Row | undefined;
      if (worker === undefined || worker.drain_requested === 1) return null;
      // Oldest first; label matching is done here rather than in SQL because labels are a JSON
      // set, and the scan stops at the first match.
      const have = new Set(req.workerLabels);
      let picked: Row | undefined;
      for (const r of this.q(`SELECT * FROM builds WHERE status = 'queued' ORDER BY seq`).iterate() as Iterable<Row>) {
        const need = JSON.parse(r.labels as string) as string[];
        if (need.every((l) => have.has(l))) {
          picked = r;
          break;
        }
      }
      if (!picked) return null;
      const id = picked.id as string;
      const attempt = (picked.attempt as number) + 1;
      let logBytes = picked.log_bytes as number;
      if (attempt > 1) {
        const banner = Buffer.from(req.attemptBanner(attempt, picked.max_attempts as number));
        this.q('INSERT INTO log_chunks (build_id, offset, data) VALUES (?, ?, ?)').run(id, logBytes, banner);
        logBytes += banner.length;
      }
      // The row as written (RETURNING), and the attempt as inserted: no read-back.
      const claimed = this.q(
        `UPDATE builds SET status = 'assigned', attempt = ?, worker_id = ?, lease = ?, assigned_at = ?,
           last_heartbeat_at = ?, log_bytes = ?, progress = NULL, failure_reason = NULL, message = NULL, exit_code = NULL,
           artifact_problems = '[]', step_starts = NULL
         WHERE id = ? AND status = 'queued' RETURNING *`,
      ).get(attempt, req.workerId, req.lease, req.now, req.now, logBytes, id) as Row;
      this.q(
        `INSERT INTO attempts (build_id, attempt, worker_id, lease, build_token_hash, claimed_at, log_offset)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ).run(id, attempt, req.workerId, req.lease, req.buildTokenHash, req.now, logBytes);
      return { build: toBuild(claimed), attempt: newAttempt(req, id, attempt, logBytes) };
    });
  }

  async getAttemptByLease(buildId: string, lease: string): Promise<AttemptRecord | null> {
    const r = this.q('SELECT * FROM attempts WHERE build_id = ? AND lease = ?').get(buildId, lease) as Row | undefined;
    return r ? toAttempt(r) : null;
  }

  async getAttemptByTokenHash(tokenHash: string): Promise<AttemptRecord | null> {
    const r = this.q('SELECT * FROM attempts WHERE build_token_hash = ?').get(tokenHash) as Row | undefined;
    return r ? toAttempt(r) : null;
  }

  async listAttempts(buildId: string): Promise<AttemptRecord[]> {
    return (this.q('SELECT * FROM attempts WHERE build_id = ? ORDER BY attempt').all(buildId) as Row[]).map(toAttempt);
  }

  async hasAttemptOnWorker(buildId: string, workerId: string): Promise<boolean> {
    return this.q('SELECT 1 FROM attempts WHERE build_id = ? AND worker_id = ? LIMIT 1').get(buildId, workerId) !== undefined;
  }

  async touchBuild(id: string, lease: string, u: { now: number; progress?: number }): Promise<BuildPulse | null> {
    return this.touches.touch(id, lease, u);
  }

  /** One group commit of heartbeat touches (`touch-batch.ts`): one lock cycle and WAL append for all. */
  private touchMany(rows: readonly TouchRow[]): (BuildPulse | null | Error)[] {
    const touch = this.q(
      `UPDATE builds SET last_heartbeat_at = ?, progress = COALESCE(?, progress)
       WHERE id = ? AND lease = ? AND status IN ${ACTIVE_SQL} RETURNING status, cancel_requested`,
    );
    return this.tx(() =>
      rows.map((t) => {
        try {
          const r = touch.get(t.now, t.progress, t.id, t.lease) as { status: BuildStatus; cancel_requested: number } | undefined;
          return r ? { status: r.status, cancelRequested: r.cancel_requested === 1 } : null;
        } catch (err) {
          // A row's own failure is its caller's alone, unless it ended the transaction (SQLite
          // rolls back by itself on SQLITE_FULL and the like): then the whole batch fails.
          if (!this.db.isTransaction) throw err;
          return err as Error;
        }
      }),
    );
  }

  async setBuildPhase(id: string, lease: string, from: readonly ActiveBuildStatus[], to: ActiveBuildStatus, now: number): Promise<boolean> {
    const placeholders = from.map(() => '?').join(',');
    return this.tx(() => {
      const r = this.db
        .prepare(
          `UPDATE builds SET status = ?, last_heartbeat_at = ?,
             started_at = CASE WHEN ? = 'running' AND started_at IS NULL THEN ? ELSE started_at END
           WHERE id = ? AND lease = ? AND status IN (${placeholders})`,
        )
        .run(to, now, to, now, id, lease, ...from);
      if (r.changes === 0) return false;
      if (to === 'running') this.q('UPDATE attempts SET running_at = COALESCE(running_at, ?) WHERE build_id = ? AND lease = ?').run(now, id, lease);
      return true;
    });
  }

  async recordStepStart(id: string, lease: string, index: number, now: number): Promise<boolean> {
    return this.tx(() => {
      const r = this.q(`SELECT steps, step_starts FROM builds WHERE id = ? AND lease = ? AND status = 'running'`).get(id, lease) as Row | undefined;
      if (r === undefined) return false;
      const starts = stepStarts(r);
      if (!Number.isInteger(index) || index < 0 || index >= starts.length) return false;
      starts[index] ??= now;
      this.q('UPDATE builds SET step_starts = ? WHERE id = ?').run(JSON.stringify(starts), id);
      return true;
    });
  }

  async findOverdueBuilds(q: OverdueQuery): Promise<BuildRecord[]> {
    const rows = this.q(
      `SELECT b.* FROM builds b JOIN attempts a ON a.build_id = b.id AND a.lease = b.lease
       WHERE (b.status = 'running' AND COALESCE(a.running_at, b.started_at) + b.timeout_s * 1000 + ? < ?)
          OR (b.status IN ('assigned', 'preparing') AND a.claimed_at + ? + ? < ?)
       ORDER BY b.seq`,
    ).all(q.graceMs, q.now, q.prepareTimeoutMs, q.graceMs, q.now) as Row[];
    return rows.map(toBuild);
  }

  async nextLivenessDeadline(q: DeadlineQuery): Promise<number | null> {
    // Three minimums, each over an index range (active builds by status and heartbeat; the
    // workers, a few dozen rows; active builds joined to their attempt by key).
    const r = this.q(
      `SELECT MIN(d) AS d FROM (
         SELECT MIN(last_heartbeat_at) + :t AS d FROM builds WHERE status IN ${ACTIVE_SQL} AND last_heartbeat_at >= :from - :t
         UNION ALL
         SELECT MIN(last_seen_at) + :t FROM workers WHERE offline = 0 AND last_seen_at >= :from - :t
         UNION ALL
         SELECT MIN(x) FROM (
           SELECT CASE WHEN b.status = 'running' THEN COALESCE(a.running_at, b.started_at) + b.timeout_s * 1000 ELSE a.claimed_at + :p END + :g AS x
           FROM builds b JOIN attempts a ON a.build_id = b.id AND a.lease = b.lease WHERE b.status IN ${ACTIVE_SQL}
         ) WHERE x >= :from
       )`,
    ).get({ t: q.heartbeatTimeoutMs, from: q.from, p: q.prepareTimeoutMs, g: q.graceMs }) as { d: number | null };
    return r.d;
  }

  async requestCancel(id: string, message?: string): Promise<void> {
    this.q(
      `UPDATE builds SET cancel_requested = 1, cancel_message = COALESCE(?, cancel_message), message = COALESCE(?, message)
       WHERE id = ? AND status IN ('queued', ${ACTIVE_SQL.slice(1, -1)})`,
    ).run(message ?? null, message ?? null, id);
  }

  async cancelQueued(id: string, now: number, message?: string): Promise<boolean> {
    const erased = this.tx(() => {
      const had = this.q(`SELECT secret_env IS NOT NULL AS sealed FROM builds WHERE id = ? AND status = 'queued'`).get(id) as { sealed: number } | undefined;
      if (!had) return null;
      this.q(
        `UPDATE builds SET status = 'cancelled', cancel_requested = 1, finished_at = ?, secret_env = NULL,
           cancel_message = COALESCE(?, cancel_message), message = COALESCE(?, cancel_message, message)
         WHERE id = ? AND status = 'queued'`,
      ).run(now, message ?? null, message ?? null, id);
      return had.sealed === 1;
    });
    if (erased) this.dropOldWalFrames();
    return erased !== null;
  }

  async unassign(buildId: string, lease: string, staleBefore?: number): Promise<boolean> {
    return this.tx(() => {
      const r = this.q(
        `UPDATE builds SET status = 'queued', attempt = attempt - 1, worker_id = NULL, lease = NULL, assigned_at = NULL,
           last_heartbeat_at = NULL WHERE id = ? AND lease = ? AND status = 'assigned' AND (? IS NULL OR last_heartbeat_at < ?)`,
      ).run(buildId, lease, staleBefore ?? null, staleBefore ?? null);
      if (r.changes === 0) return false;
      this.q('DELETE FROM attempts WHERE build_id = ? AND lease = ?').run(buildId, lease);
      return true;
    });
  }

  async finishAttempt(e: AttemptEnd): Promise<BuildRecord | null> {
    let erased = false;
    const ended = this.tx(() => {
      const cur = this.q(`SELECT * FROM builds WHERE id = ? AND lease = ? AND status IN ${ACTIVE_SQL} AND (? IS NULL OR last_heartbeat_at < ?)`).get(
        e.buildId,
        e.lease,
        e.staleBefore ?? null,
        e.staleBefore ?? null,
      ) as Row | undefined;
      if (!cur) return null;
      erased = !e.requeue && cur.secret_env !== null;
      this.q(
        `UPDATE attempts SET ended_at = ?, outcome = ?, failure_reason = ?, exit_code = ?, message = ?
         WHERE build_id = ? AND lease = ?`,
      ).run(e.now, e.requeue ? 'requeued' : e.status, e.failureReason, e.exitCode, e.message, e.buildId, e.lease);
      if (e.requeue) {
        this.q(
          `UPDATE builds SET status = 'queued', worker_id = NULL, lease = NULL, last_heartbeat_at = NULL,
             failure_reason = ?, message = ?, exit_code = ? WHERE id = ?`,
        ).run(e.failureReason, e.message, e.exitCode, e.buildId);
      } else {
        // A cancelled end keeps the message the cancel was asked with (`superseded by <sha>`)
        // first, the end's own after it; any other end says what happened in its own words.
        this.q(
          `UPDATE builds SET status = ?, lease = NULL, failure_reason = ?, exit_code = ?, finished_at = ?, secret_env = NULL,
             message = CASE WHEN ? = 'cancelled' AND cancel_message IS NOT NULL
               THEN cancel_message || CASE WHEN ? IS NULL OR ? = cancel_message THEN '' ELSE '; ' || ? END
               ELSE ? END,
             progress = CASE WHEN ? = 'succeeded' THEN 100 ELSE progress END
           WHERE id = ?`,
        ).run(e.status, e.failureReason, e.exitCode, e.now, e.status, e.message, e.message, e.message, e.message, e.status, e.buildId);
      }
      return toBuild(this.q('SELECT * FROM builds WHERE id = ?').get(e.buildId) as Row);
    });
    if (erased) this.dropOldWalFrames();
    return ended;
  }

  /**
   * After secret env values were erased: secure_delete overwrites them in the database's pages,
   * but the write-ahead log still holds older copies of those pages (the sealed values among
   * them) until SQLite happens to reuse it. A TRUNCATE checkpoint copies the log into the
   * database and empties the file. Only then — it costs an fsync. It never waits for readers
   * (a backup holding an old snapshot would otherwise stall every request for the busy
   * timeout): held off, it is tried again shortly, until it goes through. Never fatal: the
   * erase itself is committed.
   */
  private dropOldWalFrames(): void {
    if (!this.db.isOpen) return;
    let done = false;
    try {
      this.db.exec('PRAGMA busy_timeout = 0');
      const r = this.db.prepare('PRAGMA wal_checkpoint(TRUNCATE)').get() as { busy: number } | undefined;
      done = r?.busy === 0;
    } catch {
      // Busy or the disk refused: tried again below.
    } finally {
      this.db.exec(`PRAGMA busy_timeout = ${this.busyTimeoutMs}`);
    }
    if (done || this.walRetry) return;
    this.walRetry = setTimeout(() => {
      this.walRetry = null;
      this.dropOldWalFrames();
    }, WAL_RETRY_MS);
    this.walRetry.unref();
  }

  // ---- artifacts ----

  async putArtifact(a: ArtifactRecord): Promise<void> {
    this.q(
      `INSERT INTO artifacts (build_id, name, attempt, size_bytes, sha256, created_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (build_id, name) DO UPDATE SET attempt = excluded.attempt, size_bytes = excluded.size_bytes,
         sha256 = excluded.sha256, created_at = excluded.created_at
       WHERE excluded.attempt >= artifacts.attempt`,
    ).run(a.buildId, a.name, a.attempt, a.sizeBytes, a.sha256, a.createdAt);
  }

  async setArtifactProblems(buildId: string, lease: string, problems: ArtifactProblem[]): Promise<boolean> {
    return this.q('UPDATE builds SET artifact_problems = ? WHERE id = ? AND lease = ?').run(JSON.stringify(problems), buildId, lease).changes > 0;
  }

  async listArtifacts(buildId: string): Promise<ArtifactRecord[]> {
    return (this.q('SELECT * FROM artifacts WHERE build_id = ? ORDER BY name').all(buildId) as Row[]).map(toArtifact);
  }

  // ---- retention ----

  async findPrunableBuilds(cutoff: number, limit?: number): Promise<PrunableBuild[]> {
    const rows = this.q(
      `SELECT b.id, b.log_bytes,
         (SELECT COUNT(*) FROM artifacts a WHERE a.build_id = b.id) AS artifacts,
         (SELECT COALESCE(SUM(a.size_bytes), 0) FROM artifacts a WHERE a.build_id = b.id) AS artifact_bytes
       FROM builds b
       WHERE b.status IN ('succeeded', 'failed', 'cancelled') AND COALESCE(b.finished_at, b.created_at) < ?
       ORDER BY b.seq LIMIT ?`,
    ).all(cutoff, limit ?? -1) as Row[];
    return rows.map((r) => ({ id: r.id as string, logBytes: r.log_bytes as number, artifacts: r.artifacts as number, artifactBytes: r.artifact_bytes as number }));
  }

  async deleteBuilds(ids: readonly string[]): Promise<string[]> {
    return this.tx(() => {
      const deleted: string[] = [];
      for (const id of ids) {
        // Re-checked inside the transaction: only a build still final goes.
        const final = this.q(`SELECT 1 FROM builds WHERE id = ? AND status IN ('succeeded', 'failed', 'cancelled')`).get(id);
        if (!final) continue;
        this.q('DELETE FROM log_chunks WHERE build_id = ?').run(id);
        this.q('DELETE FROM artifacts WHERE build_id = ?').run(id);
        this.q('DELETE FROM attempts WHERE build_id = ?').run(id);
        this.q('DELETE FROM builds WHERE id = ?').run(id);
        deleted.push(id);
      }
      return deleted;
    });
  }

  // ---- GitHub webhook deliveries ----

  async recordDelivery(d: DeliveryRecord): Promise<boolean> {
    const r = this.q(
      `INSERT INTO webhook_deliveries (id, event, action, repository, received_at, outcome, reason, work, builds)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING`,
    ).run(d.id, d.event, d.action, d.repository, d.receivedAt, d.outcome, d.reason, d.work === null ? null : JSON.stringify(d.work), JSON.stringify(d.builds));
    return Number(r.changes) === 1;
  }

  async listDeliveries(limit: number): Promise<DeliveryRecord[]> {
    return (this.q('SELECT * FROM webhook_deliveries ORDER BY received_at DESC, id DESC LIMIT ?').all(limit) as Row[]).map(toDelivery);
  }

  async listPendingDeliveries(limit: number, only?: PendingDeliveryFilter): Promise<DeliveryRecord[]> {
    if (only === undefined) return (this.q(`SELECT * FROM webhook_deliveries WHERE outcome = 'pending' ORDER BY received_at, id LIMIT ?`).all(limit) as Row[]).map(toDelivery);
    const rows = this.q(
      `SELECT * FROM webhook_deliveries WHERE outcome = 'pending'
         AND (id IN (SELECT value FROM json_each(?)) OR received_at <= ?) ORDER BY received_at, id LIMIT ?`,
    ).all(JSON.stringify(only.ids), only.receivedBefore, limit) as Row[];
    return rows.map(toDelivery);
  }

  async settleDelivery(id: string, outcome: Exclude<DeliveryOutcome, 'pending'>, reason: string, builds: readonly string[]): Promise<boolean> {
    const r = this.q(`UPDATE webhook_deliveries SET outcome = ?, reason = ?, builds = ?, work = NULL WHERE id = ? AND outcome = 'pending'`).run(
      outcome,
      reason,
      JSON.stringify(builds),
      id,
    );
    return Number(r.changes) === 1;
  }

  async reopenDelivery(d: DeliveryRecord): Promise<boolean> {
    const r = this.q(
      `UPDATE webhook_deliveries SET outcome = 'pending', reason = ?, work = ?, builds = '[]', received_at = ? WHERE id = ? AND outcome = 'failed'`,
    ).run(d.reason, d.work === null ? null : JSON.stringify(d.work), d.receivedAt, d.id);
    return Number(r.changes) === 1;
  }

  // ---- projects ----

  async createProject(p: NewProject): Promise<ProjectRecord> {
    return this.tx(() => {
      const taken = this.q('SELECT repo FROM projects WHERE repo_key = ?').get(p.repo.toLowerCase()) as { repo: string } | undefined;
      if (taken) throw new ExpoError('PROJECT_EXISTS', `a project for ${taken.repo} already exists`);
      this.q('INSERT INTO projects (id, repo, repo_key, pipeline_path, supersede, created_at) VALUES (?, ?, ?, ?, ?, ?)').run(
        p.id,
        p.repo,
        p.repo.toLowerCase(),
        p.pipelinePath,
        Number(p.supersede),
        p.createdAt,
      );
      return toProject(this.q('SELECT * FROM projects WHERE id = ?').get(p.id) as Row, []);
    });
  }

  private secretNamesOf(projectId: string): string[] {
    return (this.q('SELECT name FROM project_secrets WHERE project_id = ? ORDER BY name').all(projectId) as { name: string }[]).map((r) => r.name);
  }

  async getProject(id: string): Promise<ProjectRecord | null> {
    const r = this.q('SELECT * FROM projects WHERE id = ?').get(id) as Row | undefined;
    return r ? toProject(r, this.secretNamesOf(id)) : null;
  }

  async getProjectByRepo(repo: string): Promise<ProjectRecord | null> {
    const r = this.q('SELECT * FROM projects WHERE repo_key = ?').get(repo.toLowerCase()) as Row | undefined;
    return r ? toProject(r, this.secretNamesOf(r.id as string)) : null;
  }

  async listProjects(): Promise<ProjectRecord[]> {
    const names = new Map<string, string[]>();
    for (const r of this.q('SELECT project_id, name FROM project_secrets ORDER BY project_id, name').all() as { project_id: string; name: string }[]) {
      names.set(r.project_id, [...(names.get(r.project_id) ?? []), r.name]);
    }
    return (this.q('SELECT * FROM projects ORDER BY repo_key').all() as Row[]).map((r) => toProject(r, names.get(r.id as string) ?? []));
  }

  async deleteProject(id: string): Promise<boolean> {
    const gone = this.tx(() => {
      const secrets = Number(this.q('DELETE FROM project_secrets WHERE project_id = ?').run(id).changes);
      return { project: Number(this.q('DELETE FROM projects WHERE id = ?').run(id).changes) === 1, secrets };
    });
    if (gone.secrets > 0) this.dropOldWalFrames();
    return gone.project;
  }

  async putProjectSecret(projectId: string, name: string, sealed: Buffer, now: number): Promise<boolean> {
    return this.tx(() => {
      if (!this.q('SELECT 1 FROM projects WHERE id = ?').get(projectId)) return false;
      this.q(
        `INSERT INTO project_secrets (project_id, name, sealed, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (project_id, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at`,
      ).run(projectId, name, sealed, now);
      return true;
    });
  }

  async deleteProjectSecret(projectId: string, name: string): Promise<boolean> {
    const gone = Number(this.q('DELETE FROM project_secrets WHERE project_id = ? AND name = ?').run(projectId, name).changes) === 1;
    if (gone) this.dropOldWalFrames();
    return gone;
  }

  async getProjectSecrets(projectId: string): Promise<ProjectSecretRecord[]> {
    const rows = this.q('SELECT name, sealed, updated_at FROM project_secrets WHERE project_id = ? ORDER BY name').all(projectId) as Row[];
    return rows.map((r) => ({ name: r.name as string, sealed: Buffer.from(r.sealed as Uint8Array), updatedAt: r.updated_at as number }));
  }

  // ---- GitHub sources and reports ----

  async unfinishedBuildsOfRef(projectId: string, ref: string): Promise<BuildRecord[]> {
    const rows = this.q(`SELECT * FROM builds WHERE source_project = ? AND source_ref = ? AND status IN ('queued', ${ACTIVE_SQL.slice(1, -1)}) ORDER BY seq`).all(
      projectId,
      ref,
    ) as Row[];
    return rows.map(toBuild);
  }

  async listBuildsToReport(limit: number): Promise<BuildRecord[]> {
    const rows = this.q(
      // The first two terms are the partial index's own condition, so SQLite reads the index of
      // builds not yet reported to the end instead of every build.
      `SELECT * FROM builds WHERE source IS NOT NULL AND coalesce(reported, '') <> 'final'
         AND (reported IS NULL
           OR (reported = 'pending' AND status IN ('running', 'succeeded', 'failed', 'cancelled'))
           OR (reported = 'running' AND status IN ('succeeded', 'failed', 'cancelled')))
       ORDER BY seq LIMIT ?`,
    ).all(limit) as Row[];
    return rows.map(toBuild);
  }

  async setReported(buildId: string, stage: ReportStage, checkRunId?: number): Promise<boolean> {
    // Only forward in ReportStage order (nothing reported is 0): a stage below the recorded one
    // leaves the row as it is, check run included.
    const rank = (x: string): string => `CASE ${x} WHEN 'pending' THEN 1 WHEN 'running' THEN 2 WHEN 'final' THEN 3 ELSE 0 END`;
    const forward = `${rank('?')} >= ${rank('reported')}`;
    const r = this.q(
      `UPDATE builds SET
         reported = CASE WHEN ${forward} THEN ? ELSE reported END,
         check_run_id = CASE WHEN ${forward} THEN COALESCE(?, check_run_id) ELSE check_run_id END
       WHERE id = ?`,
    ).run(stage, stage, stage, checkRunId ?? null, buildId);
    return Number(r.changes) === 1;
  }

  async countDeliveriesBefore(cutoff: number): Promise<number> {
    return (this.q('SELECT COUNT(*) AS n FROM webhook_deliveries WHERE received_at < ?').get(cutoff) as { n: number }).n;
  }

  async deleteDeliveriesBefore(cutoff: number): Promise<number> {
    return Number(this.q('DELETE FROM webhook_deliveries WHERE received_at < ?').run(cutoff).changes);
  }

  // ---- logs ----

  async appendLog(buildId: string, offset: number, data: Buffer, maxLogBytes: number): Promise<AppendLogResult> {
    return this.tx(() => {
      const logBytes = (this.q('SELECT log_bytes FROM builds WHERE id = ?').get(buildId) as { log_bytes: number }).log_bytes;
      if (offset > logBytes) return { kind: 'gap', expectedOffset: logBytes } as const;
      // Bytes already stored are only ever confirmed, never overwritten or skipped over blindly:
      // a chunk whose overlap differs comes from another writer, and splicing its tail after
      // someone else's bytes could cut a character in two.
      const overlap = Math.min(data.length, logBytes - offset);
      if (overlap > 0 && !this.logRange(buildId, offset, offset + overlap).equals(data.subarray(0, overlap))) {
        return { kind: 'conflict', logBytes } as const;
      }
      const fresh = data.subarray(overlap);
      if (fresh.length === 0) return { kind: 'appended', logBytes } as const;
      if (logBytes + fresh.length > maxLogBytes) return { kind: 'too-large', logBytes } as const;
      this.q('INSERT INTO log_chunks (build_id, offset, data) VALUES (?, ?, ?)').run(buildId, logBytes, fresh);
      this.q('UPDATE builds SET log_bytes = ? WHERE id = ?').run(logBytes + fresh.length, buildId);
      return { kind: 'appended', logBytes: logBytes + fresh.length } as const;
    });
  }

  // ---- the dashboard's reads ----
  // Both reads walk indexes only and stop at `limit`: a build in the window is either unfinished
  // (builds_status_seq) or finished in the window (builds_finished_at, since a build finishes after
  // it is created), and an attempt in the window was claimed in it (attempts_claimed_at) or belongs
  // to such a build (CROSS JOIN keeps SQLite from scanning attempts by claim instead). Each arm is limited before the union, so no read grows with the history.
  async listBuildsSince(since: number, limit: number): Promise<BuildRecord[]> {
    const rows = this.q(
      `SELECT * FROM builds WHERE seq IN (
         SELECT seq FROM (SELECT seq FROM builds WHERE status IN ('queued', ${ACTIVE_SQL.slice(1, -1)}) ORDER BY seq DESC LIMIT ?1)
         UNION
         SELECT seq FROM (SELECT seq FROM builds WHERE finished_at >= ?2 ORDER BY finished_at DESC LIMIT ?1))
       ORDER BY seq DESC LIMIT ?1`,
    ).all(limit, since) as Row[];
    return rows.map(toBuild);
  }

  async listAttemptsSince(since: number, limit: number): Promise<AttemptRecord[]> {
    // The attempts claimed before `since` that reach into the window (still running, or ended in
    // it) belong to builds still unfinished or finished in the window: found through those builds.
    const rows = this.q(
      `SELECT * FROM (
         SELECT * FROM (SELECT * FROM attempts WHERE claimed_at >= ?1 ORDER BY claimed_at LIMIT ?2)
         UNION ALL
         SELECT * FROM (
           SELECT a.* FROM (
             SELECT id FROM (SELECT id FROM builds WHERE status IN ('queued', ${ACTIVE_SQL.slice(1, -1)}) ORDER BY seq DESC LIMIT ?2)
             UNION
             SELECT id FROM (SELECT id FROM builds WHERE finished_at >= ?1 ORDER BY finished_at LIMIT ?2)
           ) AS b CROSS JOIN attempts AS a ON a.build_id = b.id
           WHERE a.claimed_at < ?1 AND (a.ended_at IS NULL OR a.ended_at >= ?1)
           ORDER BY a.claimed_at LIMIT ?2))
       ORDER BY claimed_at, build_id, attempt LIMIT ?2`,
    ).all(since, limit) as Row[];
    return rows.map(toAttempt);
  }
  // ---- end of the dashboard's reads ----

  // ---- log ranges ----
  async readLogRange(buildId: string, from: number, to: number): Promise<Buffer> {
    const start = Math.max(0, from);
    return to <= start ? Buffer.alloc(0) : this.logRange(buildId, start, to);
  }
  // ---- end of log ranges ----

  /** The stored bytes [from, to) of a build's log. */
  private logRange(buildId: string, from: number, to: number): Buffer {
    const rows = this.q('SELECT offset, data FROM log_chunks WHERE build_id = ? AND offset + length(data) > ? AND offset < ? ORDER BY offset').all(buildId, from, to) as {
      offset: number;
      data: Uint8Array;
    }[];
    if (rows.length === 0) return Buffer.alloc(0);
    const start = rows[0]!.offset;
    return Buffer.concat(rows.map((r) => r.data)).subarray(from - start, to - start);
  }

  async readLog(buildId: string, fromOffset: number): Promise<Buffer> {
    const rows = this.q('SELECT offset, data FROM log_chunks WHERE build_id = ? AND offset + length(data) > ? ORDER BY offset').all(buildId, fromOffset) as {
      offset: number;
      data: Uint8Array;
    }[];
    if (rows.length === 0) return Buffer.alloc(0);
    const whole = Buffer.concat(rows.map((r) => r.data));
    return whole.subarray(Math.max(0, fromOffset - rows[0]!.offset));
  }
}

