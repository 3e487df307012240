/**
 * The PostgreSQL adapter of the Store port (`--db postgres://…`): the same operations as the
 * SQLite one, each one statement or one transaction, on a `pg` pool (`pg-db.ts`), against the
 * schema of `pg-schema.ts`. The claim picks with `SELECT … FOR UPDATE SKIP LOCKED`, so two
 * controllers never hand one build to two workers. Users, sessions, tokens and the audit log are
 * in `pg-access.ts`, a build's life and its log in `pg-builds.ts`, the GitHub side (deliveries,
 * projects, reports) in `pg-github.ts`; this file holds the schema, workers and the reads.
 * Every answer is the SQLite adapter's (the conformance suite runs unchanged on both): text is
 * ordered bytewise (`COLLATE "C"`) whatever the database's locale, as SQLite orders it.
 */
import { ExpoError } from '../../protocol/errors.ts';
import { BUILD_STATUSES, type BuildStatus } from '../../protocol/domain.ts';
import type { ArtifactProblem } from '../../protocol/schemas.ts';
import { longQuery, PgDb } from './pg-db.ts';
import { delegateAccess, type AccessMethods } from './access-methods.ts';
import { PgAccess } from './pg-access.ts';
import { PgBuilds } from './pg-builds.ts';
import { PgGithub } from './pg-github.ts';
import { PG_MIGRATIONS, PG_MIGRATION_LOCK } from './pg-schema.ts';
import { redactDbUrl } from './db-url.ts';
import { ACTIVE_SQL, ARTIFACT_COLS, ATTEMPT_COLS, BUILD_COLS, FINAL_SQL, WORKER_COLS, UNFINISHED_SQL, isUniqueViolation, pgDiskError, run } from './pg-rows.ts';
import { listBuildsWhere, toArtifact, toAttempt, toBuild, toWorker } from './rows.ts';
import { newBuildValues } from './submit-claim.ts';
import type {
  ArtifactRecord,
  AttemptRecord,
  BuildRecord,
  ListBuildsFilter,
  NewBuild,
  NewWorker,
  OverdueQuery,
  PrunableBuild,
  Store,
  StoreDiskError,
  WorkerRecord,
} from './store.ts';

export interface PgStoreOptions {
  /** `postgres://…` */
  url: string;
  /** Connections in the pool. Default 10. */
  poolMax?: number;
}

/** The access methods, answered by `PgAccess` (set up in the constructor by `delegateAccess`). */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging, @typescript-eslint/no-empty-object-type
export interface PgStore extends AccessMethods {}

// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class PgStore implements Store {
  /** The pool, shared with the cluster (pg-cluster.ts) for its notifications. */
  readonly db: PgDb;
  readonly url: string;
  private readonly access: PgAccess;
  private readonly builds: PgBuilds;
  private readonly github: PgGithub;

  constructor(o: PgStoreOptions) {
    this.url = o.url;
    this.db = new PgDb({ url: o.url, ...(o.poolMax === undefined ? {} : { max: o.poolMax }) });
    this.access = new PgAccess(this.db);
    // Users, sessions, API tokens, audit; workers from the controller's side (pg-access.ts).
    delegateAccess(this, this.access);
    this.builds = new PgBuilds(this.db);
    this.github = new PgGithub(this.db);
  }

  async migrate(): Promise<void> {
    const latest = PG_MIGRATIONS.at(-1)?.version ?? 0;
    try {
      // One migration per transaction, each under the advisory lock: controllers starting
      // together on a new database queue here, and each one after the first finds it done.
      for (let done = false; !done; ) {
        done = await this.db.tx(async (c) => {
          // Another controller's migration may rightly hold this lock past the session's
          // lock_timeout (pg-db.ts); wait it out (a dead holder's session ends within ~30 s).
          await c.query('SET LOCAL lock_timeout = 0');
          // Both may rightly outlast the pool's query_timeout (pg-db.ts): a long schema change.
          await c.query(longQuery('SELECT pg_advisory_xact_lock($1::bigint)', [PG_MIGRATION_LOCK.toString()]));
          await c.query('CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)');
          const current = (await c.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations')).rows[0]?.v ?? 0;
          if (current > latest) {
            throw new ExpoError('STORE_FAILED', `the database is at schema version ${current}, newer than this controller (${latest}); upgrade expo-worker`);
          }
          const next = PG_MIGRATIONS.find((m) => m.version > current);
          if (next === undefined) return true;
          await c.query(longQuery(next.sql));
          await c.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [next.version, next.name, Date.now()]);
          return false;
        });
      }
    } catch (cause) {
      // An unreachable database stays STORE_UNAVAILABLE (503), named here, as every failure to migrate is.
      const unavailable = cause instanceof ExpoError && cause.code === 'STORE_UNAVAILABLE';
      if (cause instanceof ExpoError && !unavailable) throw cause;
      throw new ExpoError(unavailable ? 'STORE_UNAVAILABLE' : 'STORE_FAILED', `cannot migrate database ${redactDbUrl(this.url)}: ${(cause as Error).message}`, { cause });
    }
  }

  close: Store['close'] = async () => {
    await this.builds.flushTouches();
    await this.db.close();
  };

  diskError(err: unknown): StoreDiskError | null {
    return pgDiskError(err);
  }

  // ---- workers ----

  async createWorker(w: NewWorker): Promise<WorkerRecord> {
    try {
      const r = await run(this.db.pool, `INSERT INTO workers (id, labels, key_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING ${WORKER_COLS()}`, [
        w.id,
        JSON.stringify(w.labels),
        w.keyHash,
        w.createdAt,
      ]);
      return toWorker(r.rows[0]!);
    } catch (err) {
      if (isUniqueViolation(err, 'workers_pkey')) throw new ExpoError('WORKER_EXISTS', `worker '${w.id}' already exists`);
      throw err;
    }
  }

  async getWorker(id: string): Promise<WorkerRecord | null> {
    const r = await run(this.db.pool, `SELECT ${WORKER_COLS()} FROM workers WHERE id = $1`, [id]);
    return r.rows[0] ? toWorker(r.rows[0]) : null;
  }

  async getWorkerByKeyHash(keyHash: string): Promise<WorkerRecord | null> {
    const r = await run(this.db.pool, `SELECT ${WORKER_COLS()} FROM workers WHERE key_hash = $1`, [keyHash]);
    return r.rows[0] ? toWorker(r.rows[0]) : null;
  }

  async listWorkers(): Promise<WorkerRecord[]> {
    // COLLATE "C": byte order, as SQLite sorts, whatever the database's locale.
    return (await run(this.db.pool, `SELECT ${WORKER_COLS()} FROM workers ORDER BY id COLLATE "C"`)).rows.map(toWorker);
  }

  async touchWorker(id: string, c: { now: number; slotsTotal?: number; draining?: boolean }): Promise<void> {
    await run(
      this.db.pool,
      `UPDATE workers SET last_seen_at = $1, offline = 0,
         slots_total = COALESCE($2::integer, slots_total), draining = COALESCE($3::smallint, draining) WHERE id = $4`,
      [c.now, c.slotsTotal ?? null, c.draining === undefined ? null : Number(c.draining), id],
    );
  }
  async touchWorkers(ids: readonly string[], now: number): Promise<void> {
    if (ids.length === 0) return;
    // Rows locked in id order: around a failover two controllers may renew overlapping sets of workers.
    await run(
      this.db.pool,
      'UPDATE workers SET last_seen_at = $1, offline = 0 WHERE id IN (SELECT id FROM workers WHERE id = ANY($2::text[]) ORDER BY id FOR UPDATE)',
      [now, [...ids]],
    );
  }


  async markWorkerOffline(id: string, silentBefore?: number): Promise<boolean> {
    const r = await run(this.db.pool, 'UPDATE workers SET offline = 1 WHERE id = $1 AND offline = 0 AND ($2::bigint IS NULL OR last_seen_at < $2::bigint)', [id, silentBefore ?? null]);
    return r.rowCount === 1;
  }

  async findSilentWorkers(cutoff: number): Promise<WorkerRecord[]> {
    const r = await run(this.db.pool, `SELECT ${WORKER_COLS()} FROM workers WHERE offline = 0 AND last_seen_at IS NOT NULL AND last_seen_at < $1 ORDER BY id COLLATE "C"`, [cutoff]);
    return r.rows.map(toWorker);
  }

  // ---- builds: reads ----

  async createBuild(b: NewBuild): Promise<BuildRecord> {
    const r = await run(
      this.db.pool,
      `INSERT INTO builds (id, status, steps, env, secret_env, secret_env_names, labels, artifacts, timeout_s, max_attempts, created_at,
         source, source_project, source_repo_key, source_ref, source_sha)
       VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING ${BUILD_COLS()}`,
      [
        ...newBuildValues(b),
      ],
    );
    return toBuild(r.rows[0]!);
  }

  async getBuild(id: string): Promise<BuildRecord | null> {
    const r = await run(this.db.pool, `SELECT ${BUILD_COLS()} FROM builds WHERE id = $1`, [id]);
    return r.rows[0] ? toBuild(r.rows[0]) : null;
  }

  async listBuilds(f: ListBuildsFilter): Promise<BuildRecord[]> {
    const given = listBuildsWhere(f);
    const where = given.map(([col], i) => `${col} = $${i + 1}`);
    const sql = `SELECT ${BUILD_COLS()} FROM builds ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT $${given.length + 1}`;
    return (await run(this.db.pool, sql, [...given.map(([, v]) => v), f.limit])).rows.map(toBuild);
  }

  async countBuildsByStatus(): Promise<Record<BuildStatus, number>> {
    const counts = Object.fromEntries(BUILD_STATUSES.map((s) => [s, 0])) as Record<BuildStatus, number>;
    for (const r of (await run(this.db.pool, 'SELECT status, count(*) AS n FROM builds GROUP BY status')).rows) counts[r.status as BuildStatus] = r.n as number;
    return counts;
  }

  async countQueuedBuilds(): Promise<number> {
    return (await run<{ n: number }>(this.db.pool, `SELECT count(*) AS n FROM builds WHERE status = 'queued'`)).rows[0]!.n;
  }

  async activeBuildsOfWorker(workerId: string): Promise<BuildRecord[]> {
    return (await run(this.db.pool, `SELECT ${BUILD_COLS()} FROM builds WHERE worker_id = $1 AND status IN ${ACTIVE_SQL} ORDER BY seq`, [workerId])).rows.map(toBuild);
  }

  async activeBuildsByWorker(): Promise<Map<string, BuildRecord[]>> {
    const byWorker = new Map<string, BuildRecord[]>();
    for (const r of (await run(this.db.pool, `SELECT ${BUILD_COLS()} FROM builds WHERE status IN ${ACTIVE_SQL} AND worker_id IS NOT NULL ORDER BY seq`)).rows) {
      const b = toBuild(r);
      const list = byWorker.get(b.workerId!) ?? [];
      list.push(b);
      byWorker.set(b.workerId!, list);
    }
    return byWorker;
  }

  async findStaleBuilds(cutoff: number): Promise<BuildRecord[]> {
    return (await run(this.db.pool, `SELECT ${BUILD_COLS()} FROM builds WHERE status IN ${ACTIVE_SQL} AND last_heartbeat_at < $1 ORDER BY seq`, [cutoff])).rows.map(toBuild);
  }

  async findOverdueBuilds(q: OverdueQuery): Promise<BuildRecord[]> {
    const r = await run(
      this.db.pool,
      `SELECT ${BUILD_COLS('b')} FROM builds b JOIN attempts a ON a.build_id = b.id AND a.lease = b.lease
       WHERE (b.status = 'running' AND COALESCE(a.running_at, b.started_at) + b.timeout_s * 1000::bigint + $1::bigint < $2::bigint)
          OR (b.status IN ('assigned', 'preparing') AND a.claimed_at + $3::bigint + $1::bigint < $2::bigint)
       ORDER BY b.seq`,
      [q.graceMs, q.now, q.prepareTimeoutMs],
    );
    return r.rows.map(toBuild);
  }

  // ---- builds: the attempt's life (pg-builds.ts) ----
  claimBuild: Store['claimBuild'] = (...a) => this.builds.claimBuild(...a);
  createAndClaim: Store['createAndClaim'] = (...a) => this.builds.createAndClaim(...a);
  nextLivenessDeadline: Store['nextLivenessDeadline'] = (...a) => this.builds.nextLivenessDeadline(...a);
  touchBuild: Store['touchBuild'] = (...a) => this.builds.touchBuild(...a);
  setBuildPhase: Store['setBuildPhase'] = (...a) => this.builds.setBuildPhase(...a);
  recordStepStart: Store['recordStepStart'] = (...a) => this.builds.recordStepStart(...a);
  requestCancel: Store['requestCancel'] = (...a) => this.builds.requestCancel(...a);
  cancelQueued: Store['cancelQueued'] = (...a) => this.builds.cancelQueued(...a);
  unassign: Store['unassign'] = (...a) => this.builds.unassign(...a);
  finishAttempt: Store['finishAttempt'] = (...a) => this.builds.finishAttempt(...a);

  async getAttemptByLease(buildId: string, lease: string): Promise<AttemptRecord | null> {
    const r = await run(this.db.pool, `SELECT ${ATTEMPT_COLS()} FROM attempts WHERE build_id = $1 AND lease = $2`, [buildId, lease]);
    return r.rows[0] ? toAttempt(r.rows[0]) : null;
  }

  async getAttemptByTokenHash(tokenHash: string): Promise<AttemptRecord | null> {
    const r = await run(this.db.pool, `SELECT ${ATTEMPT_COLS()} FROM attempts WHERE build_token_hash = $1`, [tokenHash]);
    return r.rows[0] ? toAttempt(r.rows[0]) : null;
  }

  async listAttempts(buildId: string): Promise<AttemptRecord[]> {
    return (await run(this.db.pool, `SELECT ${ATTEMPT_COLS()} FROM attempts WHERE build_id = $1 ORDER BY attempt`, [buildId])).rows.map(toAttempt);
  }

  async hasAttemptOnWorker(buildId: string, workerId: string): Promise<boolean> {
    return (await run(this.db.pool, 'SELECT 1 FROM attempts WHERE build_id = $1 AND worker_id = $2 LIMIT 1', [buildId, workerId])).rows.length > 0;
  }

  // ---- artifacts ----

  async putArtifact(a: ArtifactRecord): Promise<void> {
    await run(
      this.db.pool,
      `INSERT INTO artifacts (build_id, name, attempt, size_bytes, sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (build_id, name) DO UPDATE SET attempt = excluded.attempt, size_bytes = excluded.size_bytes,
         sha256 = excluded.sha256, created_at = excluded.created_at
       WHERE excluded.attempt >= artifacts.attempt`,
      [a.buildId, a.name, a.attempt, a.sizeBytes, a.sha256, a.createdAt],
    );
  }

  async setArtifactProblems(buildId: string, lease: string, problems: ArtifactProblem[]): Promise<boolean> {
    const r = await run(this.db.pool, 'UPDATE builds SET artifact_problems = $1 WHERE id = $2 AND lease = $3', [JSON.stringify(problems), buildId, lease]);
    return (r.rowCount ?? 0) > 0;
  }

  async listArtifacts(buildId: string): Promise<ArtifactRecord[]> {
    return (await run(this.db.pool, `SELECT ${ARTIFACT_COLS()} FROM artifacts WHERE build_id = $1 ORDER BY name COLLATE "C"`, [buildId])).rows.map(toArtifact);
  }

  // ---- retention ----

  async findPrunableBuilds(cutoff: number, limit?: number): Promise<PrunableBuild[]> {
    const r = await run(
      this.db.pool,
      `SELECT b.id, b.log_bytes,
         (SELECT count(*) FROM artifacts a WHERE a.build_id = b.id) AS artifacts,
         (SELECT COALESCE(sum(a.size_bytes), 0)::bigint FROM artifacts a WHERE a.build_id = b.id) AS artifact_bytes
       FROM builds b
       WHERE b.status IN ${FINAL_SQL} AND COALESCE(b.finished_at, b.created_at) < $1
       ORDER BY b.seq LIMIT $2`,
      [cutoff, limit ?? null],
    );
    return r.rows.map((x) => ({ id: x.id as string, logBytes: x.log_bytes as number, artifacts: x.artifacts as number, artifactBytes: x.artifact_bytes as number }));
  }

  async deleteBuilds(ids: readonly string[]): Promise<string[]> {
    // One statement: the builds still final are locked (in id order, so two pruners cannot
    // deadlock), then their rows go with them (the foreign keys are checked at the statement's
    // end, when the children are gone too).
    const r = await run<{ id: string }>(
      this.db.pool,
      `WITH d AS MATERIALIZED (SELECT id FROM builds WHERE id = ANY($1::text[]) AND status IN ${FINAL_SQL} ORDER BY id FOR UPDATE),
         lc AS (DELETE FROM log_chunks WHERE build_id IN (SELECT id FROM d)),
         ar AS (DELETE FROM artifacts WHERE build_id IN (SELECT id FROM d)),
         at AS (DELETE FROM attempts WHERE build_id IN (SELECT id FROM d))
       DELETE FROM builds WHERE id IN (SELECT id FROM d) RETURNING id`,
      [[...ids]],
    );
    const gone = new Set(r.rows.map((x) => x.id));
    return [...new Set(ids)].filter((id) => gone.has(id));
  }

  // ---- GitHub: deliveries, projects, sources and reports (pg-github.ts) ----
  recordDelivery: Store['recordDelivery'] = (...a) => this.github.recordDelivery(...a);
  listDeliveries: Store['listDeliveries'] = (...a) => this.github.listDeliveries(...a);
  listPendingDeliveries: Store['listPendingDeliveries'] = (...a) => this.github.listPendingDeliveries(...a);
  settleDelivery: Store['settleDelivery'] = (...a) => this.github.settleDelivery(...a);
  reopenDelivery: Store['reopenDelivery'] = (...a) => this.github.reopenDelivery(...a);
  createProject: Store['createProject'] = (...a) => this.github.createProject(...a);
  getProject: Store['getProject'] = (...a) => this.github.getProject(...a);
  getProjectByRepo: Store['getProjectByRepo'] = (...a) => this.github.getProjectByRepo(...a);
  listProjects: Store['listProjects'] = (...a) => this.github.listProjects(...a);
  deleteProject: Store['deleteProject'] = (...a) => this.github.deleteProject(...a);
  putProjectSecret: Store['putProjectSecret'] = (...a) => this.github.putProjectSecret(...a);
  deleteProjectSecret: Store['deleteProjectSecret'] = (...a) => this.github.deleteProjectSecret(...a);
  getProjectSecrets: Store['getProjectSecrets'] = (...a) => this.github.getProjectSecrets(...a);
  unfinishedBuildsOfRef: Store['unfinishedBuildsOfRef'] = (...a) => this.github.unfinishedBuildsOfRef(...a);
  listBuildsToReport: Store['listBuildsToReport'] = (...a) => this.github.listBuildsToReport(...a);
  setReported: Store['setReported'] = (...a) => this.github.setReported(...a);
  countDeliveriesBefore: Store['countDeliveriesBefore'] = (...a) => this.github.countDeliveriesBefore(...a);
  deleteDeliveriesBefore: Store['deleteDeliveriesBefore'] = (...a) => this.github.deleteDeliveriesBefore(...a);

  // ---- the dashboard's reads ----
  // Each arm is limited before the union, so no read grows with the history: a build in the
  // window is unfinished (builds_status_seq) or finished in it (builds_finished_at), and an
  // attempt in the window was claimed in it (attempts_claimed_at) or belongs to such a build.
  async listBuildsSince(since: number, limit: number): Promise<BuildRecord[]> {
    const r = await run(
      this.db.pool,
      `SELECT ${BUILD_COLS()} FROM builds WHERE seq IN (
         (SELECT seq FROM builds WHERE status IN ${UNFINISHED_SQL} ORDER BY seq DESC LIMIT $1)
         UNION
         (SELECT seq FROM builds WHERE finished_at >= $2 ORDER BY finished_at DESC LIMIT $1))
       ORDER BY seq DESC LIMIT $1`,
      [limit, since],
    );
    return r.rows.map(toBuild);
  }

  async listAttemptsSince(since: number, limit: number): Promise<AttemptRecord[]> {
    const r = await run(
      this.db.pool,
      `SELECT ${ATTEMPT_COLS()} FROM (
         (SELECT ${ATTEMPT_COLS()} FROM attempts WHERE claimed_at >= $1 ORDER BY claimed_at LIMIT $2)
         UNION ALL
         (SELECT ${ATTEMPT_COLS('a')} FROM (
            (SELECT id FROM builds WHERE status IN ${UNFINISHED_SQL} ORDER BY seq DESC LIMIT $2)
            UNION
            (SELECT id FROM builds WHERE finished_at >= $1 ORDER BY finished_at LIMIT $2)
          ) AS b JOIN attempts AS a ON a.build_id = b.id
          WHERE a.claimed_at < $1 AND (a.ended_at IS NULL OR a.ended_at >= $1)
          ORDER BY a.claimed_at LIMIT $2)) AS w
       ORDER BY claimed_at, build_id COLLATE "C", attempt LIMIT $2`,
      [since, limit],
    );
    return r.rows.map(toAttempt);
  }

  // ---- logs (pg-builds.ts) ----
  appendLog: Store['appendLog'] = (...a) => this.builds.appendLog(...a);
  readLog: Store['readLog'] = (...a) => this.builds.readLog(...a);
  readLogRange: Store['readLogRange'] = (...a) => this.builds.readLogRange(...a);
}
