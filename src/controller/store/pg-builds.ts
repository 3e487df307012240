/**
 * `PgStore`'s share of a build's life on PostgreSQL: the claim, the attempt's compare-and-sets
 * (heartbeat, phase, step starts, cancel, unassign, finish) and the log. The semantics are
 * SQLite's (`sqlite-store.ts`), statement for statement; what differs is how two controllers on
 * one database are kept apart, since SQLite's single connection serializes everything for free:
 *
 * - the claim picks with `FOR UPDATE SKIP LOCKED`, so concurrent claimers walk past each
 *   other's builds instead of queueing on them, and holds the worker row `FOR SHARE` while it
 *   writes (a drain waits for a claim in flight, and a claim after the drain sees it); share
 *   locks never wait for each other and SKIP LOCKED never waits, so claims cannot deadlock;
 * - every other write is one `UPDATE … WHERE <state> RETURNING` (with its companion write in a
 *   data-modifying CTE of the same statement): under READ COMMITTED a second writer waits for
 *   the first's row lock and re-checks the condition on the row as committed, so of two exactly
 *   one wins;
 * - an append locks the build row (`FOR UPDATE`) so two appenders to one log take turns.
 */
import { ExpoError } from '../../protocol/errors.ts';
import type { ActiveBuildStatus } from '../../protocol/domain.ts';
import type { PgDb } from './pg-db.ts';
import { ACTIVE_SQL, BUILD_COLS, UNFINISHED_SQL, run, sqlState, type Queryable } from './pg-rows.ts';
import { stepStarts, toBuild, type Row } from './rows.ts';
import type { AppendLogResult, AttemptEnd, BuildPulse, BuildRecord, Claim, ClaimRequest, DeadlineQuery, NewBuild } from './store.ts';
import { asSubmitted, newAttempt, newBuildValues } from './submit-claim.ts';
import { TouchBatch, type TouchRow } from './touch-batch.ts';

// The fenced heartbeat touch of many builds (a batch never holds one build twice), one answer row
// per input row, by its position in the arrays: `status` null where the fenced write matched
// nothing. The rows are locked first, in id order (`l`): the join below may scan the table in any
// order (a hash join for a large batch), and two overlapping batches locking in different orders
// deadlock. A row another transaction holds is skipped (`locked` false) and touched on its own
// (TOUCH_ONE): its lock wait must not hold up the batch, nor the batches queued behind it.
const TOUCH_MANY = `
  WITH l AS MATERIALIZED (SELECT id FROM builds WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE SKIP LOCKED),
  u AS (
    UPDATE builds b SET last_heartbeat_at = v.now, progress = COALESCE(v.progress, b.progress)
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::int[]) WITH ORDINALITY AS v(id, lease, now, progress, i)
    WHERE b.id = v.id AND b.id IN (SELECT id FROM l) AND b.lease = v.lease AND b.status IN ${ACTIVE_SQL}
    RETURNING v.i, b.status, b.cancel_requested)
  SELECT v.i::int AS i, u.status, u.cancel_requested, v.id IN (SELECT id FROM l) AS locked
  FROM unnest($1::text[]) WITH ORDINALITY AS v(id, i) LEFT JOIN u ON u.i = v.i`;

// One build's fenced touch, for a row the batch found locked. It may commit after a later beat of
// the same build did (that beat's batch found the row free first): the time never goes back.
const TOUCH_ONE = `
  UPDATE builds SET
    progress = CASE WHEN $3::bigint >= last_heartbeat_at THEN COALESCE($4::int, progress) ELSE progress END,
    last_heartbeat_at = GREATEST(last_heartbeat_at, $3::bigint)
  WHERE id = $1 AND lease = $2 AND status IN ${ACTIVE_SQL}
  RETURNING status, cancel_requested`;

// The worker's drain flag is read in a one-time filter before the scan: a worker gone or drained
// picks nothing. Labels are JSON arrays; `<@` on jsonb arrays is "every element of the left is in
// the right", the same test SQLite's adapter makes in JS, here inside the scan so that SKIP LOCKED
// applies to exactly the rows considered.
const WORKER = `w AS MATERIALIZED (SELECT drain_requested FROM workers WHERE id = $1 FOR SHARE)`;
const PICKED = `
  SELECT id, attempt, max_attempts, log_bytes FROM builds
  WHERE (SELECT drain_requested FROM w) = 0 AND status = 'queued' AND labels::jsonb <@ $2::jsonb
  ORDER BY seq LIMIT 1 FOR UPDATE OF builds SKIP LOCKED`;
const PICK = `WITH ${WORKER} ${PICKED}`;

// The common claim, a build's first attempt, in one statement (its own transaction). The worker
// row is locked only once a build is picked (an idle poll writes nothing, not even a row lock):
// the pick reads the drain flag as of the statement's start, and the update re-reads it under
// `FOR SHARE`, which in READ COMMITTED sees the latest committed drain (or waits for one in
// flight). Only a build with no attempt yet is taken here (no banner to write); one picked for a
// later attempt, or lost to a drain that raced the pick, is left as it was (its lock goes with
// the statement) for the transaction below, which asks for the banner and re-checks the drain.
const CLAIM_FIRST = `
  WITH p AS MATERIALIZED (
    SELECT id, attempt FROM builds
    WHERE EXISTS (SELECT 1 FROM workers WHERE id = $1 AND drain_requested = 0) AND status = 'queued' AND labels::jsonb <@ $2::jsonb
    ORDER BY seq LIMIT 1 FOR UPDATE OF builds SKIP LOCKED),
  u AS (
    UPDATE builds b SET status = 'assigned', attempt = 1, worker_id = $1, lease = $3, assigned_at = $4,
      last_heartbeat_at = $4, progress = NULL, failure_reason = NULL, message = NULL, exit_code = NULL,
      artifact_problems = '[]', step_starts = NULL
    WHERE b.id = (SELECT id FROM p WHERE attempt = 0) AND b.status = 'queued'
      AND EXISTS (SELECT 1 FROM workers w WHERE w.id = $1 AND w.drain_requested = 0 AND b.id IS NOT NULL FOR SHARE)
    RETURNING ${BUILD_COLS('b')}),
  a AS (
    INSERT INTO attempts (build_id, attempt, worker_id, lease, build_token_hash, claimed_at, log_offset)
    SELECT id, 1, $1::text, $3::text, $5::text, $4::bigint, log_bytes FROM u)
  SELECT u.* FROM p LEFT JOIN u ON u.id = p.id`;

// A submission handed at once to a waiting worker (`createAndClaim`), in one statement: the build
// is written already claimed when that worker takes it now — it is there and not drained (held
// `FOR SHARE`, as the claim holds it), has every label the build names, and no queued build it
// could take is older — and queued otherwise. The older check sees a build another claimer has
// locked as still queued, and then takes nothing: the caller falls back to the queue's wake-up.
const CREATE_AND_CLAIM = `
  WITH w AS MATERIALIZED (SELECT 1 FROM workers WHERE id = $17 AND drain_requested = 0 FOR SHARE),
  t AS MATERIALIZED (
    SELECT EXISTS (SELECT 1 FROM w) AND $6::jsonb <@ $18::jsonb
      AND NOT EXISTS (SELECT 1 FROM builds WHERE status = 'queued' AND labels::jsonb <@ $18::jsonb) AS takes),
  ins AS (
    INSERT INTO builds (id, status, steps, env, secret_env, secret_env_names, labels, artifacts, timeout_s, max_attempts, created_at,
      source, source_project, source_repo_key, source_ref, source_sha, attempt, worker_id, lease, assigned_at, last_heartbeat_at)
    SELECT $1::text, CASE WHEN takes THEN 'assigned' ELSE 'queued' END, $2::text, $3::text, $4::bytea, $5::text, $6::text, $7::text,
      $8::integer, $9::integer, $10::bigint, $11::text, $12::text, $13::text, $14::text, $15::text,
      CASE WHEN takes THEN 1 ELSE 0 END, CASE WHEN takes THEN $17::text END, CASE WHEN takes THEN $19::text END,
      CASE WHEN takes THEN $16::bigint END, CASE WHEN takes THEN $16::bigint END
    FROM t RETURNING ${BUILD_COLS()}),
  a AS (
    INSERT INTO attempts (build_id, attempt, worker_id, lease, build_token_hash, claimed_at, log_offset)
    SELECT id, 1, $17::text, $19::text, $20::text, $16::bigint, 0 FROM ins WHERE status = 'assigned')
  SELECT * FROM ins`;

const claimSql = (banner: boolean): string => `
  WITH u AS (
    UPDATE builds SET status = 'assigned', attempt = $2, worker_id = $3, lease = $4, assigned_at = $5,
      last_heartbeat_at = $5, log_bytes = $6, progress = NULL, failure_reason = NULL, message = NULL, exit_code = NULL,
      artifact_problems = '[]', step_starts = NULL
    WHERE id = $1 AND status = 'queued' RETURNING ${BUILD_COLS()}),
  a AS (
    INSERT INTO attempts (build_id, attempt, worker_id, lease, build_token_hash, claimed_at, log_offset)
    SELECT id, $2::integer, $3::text, $4::text, $7::text, $5::bigint, $6::bigint FROM u)
  ${banner ? `, l AS (INSERT INTO log_chunks (build_id, "offset", data) SELECT id, $8::bigint, $9::bytea FROM u)` : ''}
  SELECT * FROM u`;
const CLAIM = claimSql(false);
const CLAIM_WITH_BANNER = claimSql(true);

const FINISH_REQUEUE = `
  WITH u AS (
    UPDATE builds SET status = 'queued', worker_id = NULL, lease = NULL, last_heartbeat_at = NULL,
      failure_reason = $3, message = $4, exit_code = $5
    WHERE id = $1 AND lease = $2 AND status IN ${ACTIVE_SQL} AND ($7::bigint IS NULL OR last_heartbeat_at < $7::bigint) RETURNING ${BUILD_COLS()}),
  a AS (
    UPDATE attempts SET ended_at = $6, outcome = 'requeued', failure_reason = $3, exit_code = $5, message = $4
    WHERE build_id = $1 AND lease = $2 AND EXISTS (SELECT 1 FROM u))
  SELECT * FROM u`;

// A cancelled end keeps the message the cancel was asked with (`superseded by <sha>`) first, the
// end's own after it; any other end says what happened in its own words.
const FINISH_FINAL = `
  WITH u AS (
    UPDATE builds SET status = $3, lease = NULL, failure_reason = $4, exit_code = $5, finished_at = $6, secret_env = NULL,
      message = CASE WHEN $3 = 'cancelled' AND cancel_message IS NOT NULL
        THEN cancel_message || CASE WHEN $7::text IS NULL OR $7::text = cancel_message THEN '' ELSE '; ' || $7::text END
        ELSE $7::text END,
      progress = CASE WHEN $3 = 'succeeded' THEN 100 ELSE progress END
    WHERE id = $1 AND lease = $2 AND status IN ${ACTIVE_SQL} AND ($8::bigint IS NULL OR last_heartbeat_at < $8::bigint) RETURNING ${BUILD_COLS()}),
  a AS (
    UPDATE attempts SET ended_at = $6, outcome = $3, failure_reason = $4, exit_code = $5, message = $7::text
    WHERE build_id = $1 AND lease = $2 AND EXISTS (SELECT 1 FROM u))
  SELECT * FROM u`;

// The common append, at the log's end and within its limit, in one statement (its own
// transaction) under the build's row lock: `after` is null when the chunk is anywhere else, or
// too large, and the checked append (a transaction) decides what it is.
const APPEND_AT_END = `
  WITH b AS MATERIALIZED (SELECT log_bytes FROM builds WHERE id = $1 FOR UPDATE),
  ok AS MATERIALIZED (SELECT 1 FROM b WHERE b.log_bytes = $2::bigint AND $2::bigint + length($3::bytea) <= $4::bigint),
  l AS (INSERT INTO log_chunks (build_id, "offset", data) SELECT $1, $2::bigint, $3::bytea FROM ok),
  u AS (UPDATE builds SET log_bytes = $2::bigint + length($3::bytea) WHERE id = $1 AND EXISTS (SELECT 1 FROM ok) RETURNING log_bytes)
  SELECT b.log_bytes AS before, (SELECT log_bytes FROM u) AS after FROM b`;

// Chunks are contiguous, so the first one of a range is the last starting at or before `from`:
// found by one probe of the primary key, and the scan starts there rather than at byte 0.
const chunksFrom = (bounded: boolean): string => `
  SELECT "offset", data FROM log_chunks
  WHERE build_id = $1 AND "offset" + length(data) > $2
    AND "offset" >= COALESCE((SELECT max("offset") FROM log_chunks WHERE build_id = $1 AND "offset" <= $2), 0)
    ${bounded ? 'AND "offset" < $3' : ''}
  ORDER BY "offset"`;
const CHUNKS_RANGE = chunksFrom(true);
const CHUNKS_TAIL = chunksFrom(false);

type Chunk = { offset: number; data: Buffer };

/** Joins contiguous chunks, the first starting at or before `from`, and cuts [from, to). */
const cut = (rows: Chunk[], from: number, to?: number): Buffer => {
  if (rows.length === 0) return Buffer.alloc(0);
  const start = rows[0]!.offset;
  const whole = Buffer.concat(rows.map((r) => r.data));
  return whole.subarray(Math.max(0, from - start), to === undefined ? undefined : Math.max(0, to - start));
};

export class PgBuilds {
  private readonly db: PgDb;
  /** Heartbeat touches of one event-loop turn, written in one statement. */
  private readonly touches = new TouchBatch((rows) => this.touchMany(rows));

  constructor(db: PgDb) {
    this.db = db;
  }

  /** SQLite's three minimums (`SqliteStore.nextLivenessDeadline`), in one statement. */
  async nextLivenessDeadline(q: DeadlineQuery): Promise<number | null> {
    const r = await run<{ d: string | number | null }>(
      this.db.pool,
      `SELECT LEAST(
         (SELECT MIN(last_heartbeat_at) + $1::bigint FROM builds WHERE status IN ${ACTIVE_SQL} AND last_heartbeat_at >= $2::bigint - $1::bigint),
         (SELECT MIN(last_seen_at) + $1::bigint FROM workers WHERE offline = 0 AND last_seen_at >= $2::bigint - $1::bigint),
         (SELECT MIN(x) FROM (
            SELECT CASE WHEN b.status = 'running' THEN COALESCE(a.running_at, b.started_at) + b.timeout_s * 1000::bigint ELSE a.claimed_at + $3::bigint END + $4::bigint AS x
            FROM builds b JOIN attempts a ON a.build_id = b.id AND a.lease = b.lease WHERE b.status IN ${ACTIVE_SQL}
          ) o WHERE x >= $2::bigint)
       ) AS d`,
      [q.heartbeatTimeoutMs, q.from, q.prepareTimeoutMs, q.graceMs],
    );
    const d = r.rows[0]?.d ?? null;
    return d === null ? null : Number(d);
  }

  async claimBuild(req: ClaimRequest): Promise<Claim | null> {
    const labels = JSON.stringify(req.workerLabels);
    const first = (await run(this.db.pool, CLAIM_FIRST, [req.workerId, labels, req.lease, req.now, req.buildTokenHash])).rows[0];
    if (first === undefined) return null;
    if (first.id !== null) return { build: toBuild(first), attempt: newAttempt(req, first.id as string, 1, first.log_bytes as number) };
    return this.claimLater(req, labels);
  }

  async createAndClaim(b: NewBuild, req: ClaimRequest): Promise<{ build: BuildRecord; claim: Claim | null }> {
    const row = (
      await run(this.db.pool, CREATE_AND_CLAIM, [
        ...newBuildValues(b),
        req.now,
        req.workerId,
        JSON.stringify(req.workerLabels),
        req.lease,
        req.buildTokenHash,
      ])
    ).rows[0]!;
    const build = toBuild(row);
    if (build.status !== 'assigned') return { build, claim: null };
    return { build: asSubmitted(build), claim: { build, attempt: newAttempt(req, b.id, 1, 0) } };
  }

  /** The claim of whatever the pick finds now, in a transaction: from a second attempt on, its banner goes into the log first. */
  private async claimLater(req: ClaimRequest, labels: string): Promise<Claim | null> {
    return this.db.tx(async (c) => {
      const picked = (await run(c, PICK, [req.workerId, labels])).rows[0];
      if (picked === undefined) return null;
      const id = picked.id as string;
      const attempt = (picked.attempt as number) + 1;
      const bannerAt = picked.log_bytes as number;
      const banner = attempt > 1 ? Buffer.from(req.attemptBanner(attempt, picked.max_attempts as number)) : null;
      const logBytes = bannerAt + (banner?.length ?? 0);
      const args = [id, attempt, req.workerId, req.lease, req.now, logBytes, req.buildTokenHash];
      const r = banner === null ? await run(c, CLAIM, args) : await run(c, CLAIM_WITH_BANNER, [...args, bannerAt, banner]);
      // The row is ours (FOR UPDATE), so the compare-and-set cannot miss; checked all the same.
      const row = r.rows[0];
      if (row === undefined) throw new ExpoError('STORE_FAILED', `build ${id} changed under its claim lock`);
      return { build: toBuild(row), attempt: newAttempt(req, id, attempt, logBytes) };
    });
  }

  async touchBuild(id: string, lease: string, u: { now: number; progress?: number }): Promise<BuildPulse | null> {
    return this.touches.touch(id, lease, u);
  }

  /** Writes the touches still queued, and waits for those touched on their own (before the pool closes). */
  flushTouches(): Promise<void> {
    return this.touches.settle();
  }

  /**
   * One group commit of heartbeat touches (`touch-batch.ts`): one statement for the batch; a row
   * another transaction holds is answered later, by its own statement (TOUCH_MANY says why).
   */
  private async touchMany(rows: readonly TouchRow[]): Promise<(BuildPulse | null | Promise<BuildPulse | null>)[]> {
    // Locked in id order by the statement itself (TOUCH_MANY); a deadlock with another
    // multi-row writer locking in another order is still possible, and is tried once more.
    const order = rows.map((_, i) => i).sort((a, b) => (rows[a]!.id < rows[b]!.id ? -1 : rows[a]!.id > rows[b]!.id ? 1 : 0));
    const args = [order.map((i) => rows[i]!.id), order.map((i) => rows[i]!.lease), order.map((i) => rows[i]!.now), order.map((i) => rows[i]!.progress)];
    const once = () => run<{ i: number; status: BuildPulse['status'] | null; cancel_requested: number | null; locked: boolean }>(this.db.pool, TOUCH_MANY, args);
    const r = await once().catch((err: unknown) => (sqlState(err) === '40P01' ? once() : Promise.reject(err)));
    const out: (BuildPulse | null | Promise<BuildPulse | null>)[] = rows.map(() => null);
    for (const row of r.rows) {
      const k = order[row.i - 1]!;
      if (!row.locked) out[k] = this.touchOne(rows[k]!);
      else if (row.status !== null) out[k] = { status: row.status, cancelRequested: row.cancel_requested === 1 };
    }
    return out;
  }

  private async touchOne(t: TouchRow): Promise<BuildPulse | null> {
    const r = await run<{ status: BuildPulse['status']; cancel_requested: number }>(this.db.pool, TOUCH_ONE, [t.id, t.lease, t.now, t.progress]);
    const row = r.rows[0];
    return row === undefined ? null : { status: row.status, cancelRequested: row.cancel_requested === 1 };
  }

  async setBuildPhase(id: string, lease: string, from: readonly ActiveBuildStatus[], to: ActiveBuildStatus, now: number): Promise<boolean> {
    const r = await run(
      this.db.pool,
      `WITH u AS (
         UPDATE builds SET status = $1, last_heartbeat_at = $2,
           started_at = CASE WHEN $1 = 'running' AND started_at IS NULL THEN $2 ELSE started_at END
         WHERE id = $3 AND lease = $4 AND status = ANY($5::text[]) RETURNING id),
       a AS (
         UPDATE attempts SET running_at = COALESCE(running_at, $2)
         WHERE $1 = 'running' AND build_id = $3 AND lease = $4 AND EXISTS (SELECT 1 FROM u))
       SELECT id FROM u`,
      [to, now, id, lease, [...from]],
    );
    return r.rows.length === 1;
  }

  async recordStepStart(id: string, lease: string, index: number, now: number): Promise<boolean> {
    if (!Number.isInteger(index) || index < 0) return false;
    return this.db.tx(async (c) => {
      const r = (await run(c, `SELECT steps, step_starts FROM builds WHERE id = $1 AND lease = $2 AND status = 'running' FOR UPDATE`, [id, lease])).rows[0];
      if (r === undefined) return false;
      const starts = stepStarts(r);
      if (index >= starts.length) return false;
      starts[index] ??= now;
      await run(c, 'UPDATE builds SET step_starts = $1 WHERE id = $2', [JSON.stringify(starts), id]);
      return true;
    });
  }

  async requestCancel(id: string, message?: string): Promise<void> {
    await run(
      this.db.pool,
      `UPDATE builds SET cancel_requested = 1, cancel_message = COALESCE($1::text, cancel_message), message = COALESCE($1::text, message)
       WHERE id = $2 AND status IN ${UNFINISHED_SQL}`,
      [message ?? null, id],
    );
  }

  async cancelQueued(id: string, now: number, message?: string): Promise<boolean> {
    const r = await run(
      this.db.pool,
      `UPDATE builds SET status = 'cancelled', cancel_requested = 1, finished_at = $1, secret_env = NULL,
         cancel_message = COALESCE($2::text, cancel_message), message = COALESCE($2::text, cancel_message, message)
       WHERE id = $3 AND status = 'queued'`,
      [now, message ?? null, id],
    );
    return r.rowCount === 1;
  }

  async unassign(buildId: string, lease: string, staleBefore?: number): Promise<boolean> {
    const r = await run(
      this.db.pool,
      `WITH u AS (
         UPDATE builds SET status = 'queued', attempt = attempt - 1, worker_id = NULL, lease = NULL, assigned_at = NULL,
           last_heartbeat_at = NULL WHERE id = $1 AND lease = $2 AND status = 'assigned'
           AND ($3::bigint IS NULL OR last_heartbeat_at < $3::bigint) RETURNING id),
       d AS (DELETE FROM attempts WHERE build_id = $1 AND lease = $2 AND EXISTS (SELECT 1 FROM u))
       SELECT id FROM u`,
      [buildId, lease, staleBefore ?? null],
    );
    return r.rows.length === 1;
  }

  async finishAttempt(e: AttemptEnd): Promise<BuildRecord | null> {
    const r = e.requeue
      ? await run(this.db.pool, FINISH_REQUEUE, [e.buildId, e.lease, e.failureReason, e.message, e.exitCode, e.now, e.staleBefore ?? null])
      : await run(this.db.pool, FINISH_FINAL, [e.buildId, e.lease, e.status, e.failureReason, e.exitCode, e.now, e.message, e.staleBefore ?? null]);
    const row = r.rows[0];
    return row ? toBuild(row) : null;
  }

  // ---- logs ----

  async appendLog(buildId: string, offset: number, data: Buffer, maxLogBytes: number): Promise<AppendLogResult> {
    if (data.length > 0) {
      const r = (await run<{ before: number; after: number | null }>(this.db.pool, APPEND_AT_END, [buildId, offset, data, maxLogBytes])).rows[0];
      if (r?.after !== null && r?.after !== undefined) return { kind: 'appended', logBytes: r.after };
    }
    return this.appendChecked(buildId, offset, data, maxLogBytes);
  }

  /** The append that compares an overlap with what is stored, in a transaction holding the build's row. */
  private async appendChecked(buildId: string, offset: number, data: Buffer, maxLogBytes: number): Promise<AppendLogResult> {
    return this.db.tx(async (c) => {
      const row = (await run<{ log_bytes: number }>(c, 'SELECT log_bytes FROM builds WHERE id = $1 FOR UPDATE', [buildId])).rows[0];
      if (row === undefined) throw new ExpoError('STORE_FAILED', `appendLog: no build ${buildId}`);
      const logBytes = row.log_bytes;
      if (offset > logBytes) return { kind: 'gap', expectedOffset: logBytes } as const;
      // Bytes already stored are only ever confirmed, never overwritten or skipped over blindly:
      // a chunk whose overlap differs comes from another writer, and splicing its tail after
      // someone else's bytes could cut a character in two.
      const overlap = Math.min(data.length, logBytes - offset);
      if (overlap > 0 && !(await this.range(c, buildId, offset, offset + overlap)).equals(data.subarray(0, overlap))) {
        return { kind: 'conflict', logBytes } as const;
      }
      const fresh = data.subarray(overlap);
      if (fresh.length === 0) return { kind: 'appended', logBytes } as const;
      if (logBytes + fresh.length > maxLogBytes) return { kind: 'too-large', logBytes } as const;
      await run(c, `WITH l AS (INSERT INTO log_chunks (build_id, "offset", data) VALUES ($1, $2, $3)) UPDATE builds SET log_bytes = $4 WHERE id = $1`, [
        buildId,
        logBytes,
        fresh,
        logBytes + fresh.length,
      ]);
      return { kind: 'appended', logBytes: logBytes + fresh.length } as const;
    });
  }

  async readLog(buildId: string, fromOffset: number): Promise<Buffer> {
    const from = Math.max(0, fromOffset);
    return cut(await this.chunks(this.db.pool, CHUNKS_TAIL, [buildId, from]), from);
  }

  async readLogRange(buildId: string, from: number, to: number): Promise<Buffer> {
    const start = Math.max(0, from);
    return to <= start ? Buffer.alloc(0) : this.range(this.db.pool, buildId, start, to);
  }

  /** The stored bytes [from, to) of a build's log. */
  private async range(on: Queryable, buildId: string, from: number, to: number): Promise<Buffer> {
    return cut(await this.chunks(on, CHUNKS_RANGE, [buildId, from, to]), from, to);
  }

  private async chunks(on: Queryable, sql: string, args: unknown[]): Promise<Chunk[]> {
    return (await run<Row>(on, sql, args)).rows.map((r) => ({ offset: r.offset as number, data: r.data as Buffer }));
  }
}
