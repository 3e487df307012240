/**
 * `PgStore`'s share of the GitHub side on PostgreSQL: webhook deliveries, projects with their
 * sealed secrets, and how far each build's state was reported. SQLite's semantics
 * (`sqlite-store.ts`), each call one statement: a unique insert or a compare-and-set on the
 * row's state decides between two concurrent callers.
 */
import { ExpoError } from '../../protocol/errors.ts';
import type { PgDb } from './pg-db.ts';
import { BUILD_COLS, DELIVERY_COLS, PROJECT_COLS, UNFINISHED_SQL, isUniqueViolation, run, sqlState } from './pg-rows.ts';
import { toBuild, toDelivery, toProject as projectOf, type Row } from './rows.ts';

import type { BuildRecord, DeliveryOutcome, DeliveryRecord, NewProject, PendingDeliveryFilter, ProjectRecord, ProjectSecretRecord, ReportStage, Store } from './store.ts';

/** A project row with its `secret_names` (a text[] of its secrets' names, sorted). */
const toProject = (r: Row): ProjectRecord => projectOf(r, (r.secret_names as string[] | null | undefined) ?? []);

/** A project's columns with its secrets' names (sorted bytewise, as SQLite sorts). */
const PROJECT = `${PROJECT_COLS('p')}, array(SELECT s.name FROM project_secrets s WHERE s.project_id = p.id ORDER BY s.name COLLATE "C") AS secret_names`;

/** Only forward in ReportStage order (nothing reported is 0). */
const rank = (x: string): string => `CASE ${x} WHEN 'pending' THEN 1 WHEN 'running' THEN 2 WHEN 'final' THEN 3 ELSE 0 END`;
const FORWARD = `${rank('$1::text')} >= ${rank('reported')}`;

type GithubMethods = Pick<
  Store,
  | 'recordDelivery'
  | 'listDeliveries'
  | 'listPendingDeliveries'
  | 'settleDelivery'
  | 'reopenDelivery'
  | 'createProject'
  | 'getProject'
  | 'getProjectByRepo'
  | 'listProjects'
  | 'deleteProject'
  | 'putProjectSecret'
  | 'deleteProjectSecret'
  | 'getProjectSecrets'
  | 'unfinishedBuildsOfRef'
  | 'listBuildsToReport'
  | 'setReported'
  | 'countDeliveriesBefore'
  | 'deleteDeliveriesBefore'
>;

export class PgGithub implements GithubMethods {
  private readonly db: PgDb;

  constructor(db: PgDb) {
    this.db = db;
  }

  // ---- webhook deliveries ----

  async recordDelivery(d: DeliveryRecord): Promise<boolean> {
    const r = await run(
      this.db.pool,
      `INSERT INTO webhook_deliveries (id, event, action, repository, received_at, outcome, reason, work, builds)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING`,
      [d.id, d.event, d.action, d.repository, d.receivedAt, d.outcome, d.reason, d.work === null ? null : JSON.stringify(d.work), JSON.stringify(d.builds)],
    );
    return r.rowCount === 1;
  }

  async listDeliveries(limit: number): Promise<DeliveryRecord[]> {
    return (await run(this.db.pool, `SELECT ${DELIVERY_COLS()} FROM webhook_deliveries ORDER BY received_at DESC, id COLLATE "C" DESC LIMIT $1`, [limit])).rows.map(toDelivery);
  }

  async listPendingDeliveries(limit: number, only?: PendingDeliveryFilter): Promise<DeliveryRecord[]> {
    const r =
      only === undefined
        ? await run(this.db.pool, `SELECT ${DELIVERY_COLS()} FROM webhook_deliveries WHERE outcome = 'pending' ORDER BY received_at, id COLLATE "C" LIMIT $1`, [limit])
        : await run(
            this.db.pool,
            `SELECT ${DELIVERY_COLS()} FROM webhook_deliveries WHERE outcome = 'pending'
               AND (id = ANY($2::text[]) OR received_at <= $3) ORDER BY received_at, id COLLATE "C" LIMIT $1`,
            [limit, [...only.ids], only.receivedBefore],
          );
    return r.rows.map(toDelivery);
  }

  async settleDelivery(id: string, outcome: Exclude<DeliveryOutcome, 'pending'>, reason: string, builds: readonly string[]): Promise<boolean> {
    const r = await run(this.db.pool, `UPDATE webhook_deliveries SET outcome = $1, reason = $2, builds = $3, work = NULL WHERE id = $4 AND outcome = 'pending'`, [
      outcome,
      reason,
      JSON.stringify(builds),
      id,
    ]);
    return r.rowCount === 1;
  }

  async reopenDelivery(d: DeliveryRecord): Promise<boolean> {
    const r = await run(
      this.db.pool,
      `UPDATE webhook_deliveries SET outcome = 'pending', reason = $1, work = $2, builds = '[]', received_at = $3 WHERE id = $4 AND outcome = 'failed'`,
      [d.reason, d.work === null ? null : JSON.stringify(d.work), d.receivedAt, d.id],
    );
    return r.rowCount === 1;
  }

  async countDeliveriesBefore(cutoff: number): Promise<number> {
    return (await run<{ n: number }>(this.db.pool, 'SELECT count(*) AS n FROM webhook_deliveries WHERE received_at < $1', [cutoff])).rows[0]!.n;
  }

  async deleteDeliveriesBefore(cutoff: number): Promise<number> {
    return (await run(this.db.pool, 'DELETE FROM webhook_deliveries WHERE received_at < $1', [cutoff])).rowCount ?? 0;
  }

  // ---- projects ----

  async createProject(p: NewProject): Promise<ProjectRecord> {
    try {
      const r = await run(
        this.db.pool,
        `INSERT INTO projects (id, repo, repo_key, pipeline_path, supersede, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${PROJECT_COLS()}`,
        [p.id, p.repo, p.repo.toLowerCase(), p.pipelinePath, Number(p.supersede), p.createdAt],
      );
      return toProject(r.rows[0]!);
    } catch (err) {
      if (!isUniqueViolation(err, 'projects_repo_key_key')) throw err;
      // The message names the repo as it was registered, which only the row that won knows.
      const taken = (await run<{ repo: string }>(this.db.pool, 'SELECT repo FROM projects WHERE repo_key = $1', [p.repo.toLowerCase()])).rows[0];
      throw new ExpoError('PROJECT_EXISTS', `a project for ${taken?.repo ?? p.repo} already exists`);
    }
  }

  async getProject(id: string): Promise<ProjectRecord | null> {
    const r = await run(this.db.pool, `SELECT ${PROJECT} FROM projects p WHERE p.id = $1`, [id]);
    return r.rows[0] ? toProject(r.rows[0]) : null;
  }

  async getProjectByRepo(repo: string): Promise<ProjectRecord | null> {
    const r = await run(this.db.pool, `SELECT ${PROJECT} FROM projects p WHERE p.repo_key = $1`, [repo.toLowerCase()]);
    return r.rows[0] ? toProject(r.rows[0]) : null;
  }

  async listProjects(): Promise<ProjectRecord[]> {
    return (await run(this.db.pool, `SELECT ${PROJECT} FROM projects p ORDER BY p.repo_key COLLATE "C"`)).rows.map(toProject);
  }

  async deleteProject(id: string): Promise<boolean> {
    // Its secrets go with it (ON DELETE CASCADE), in the same statement.
    return (await run(this.db.pool, 'DELETE FROM projects WHERE id = $1', [id])).rowCount === 1;
  }

  async putProjectSecret(projectId: string, name: string, sealed: Buffer, now: number): Promise<boolean> {
    try {
      const r = await run(
        this.db.pool,
        `INSERT INTO project_secrets (project_id, name, sealed, updated_at)
         SELECT id, $2::text, $3::bytea, $4::bigint FROM projects WHERE id = $1
         ON CONFLICT (project_id, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at`,
        [projectId, name, sealed, now],
      );
      return r.rowCount === 1;
    } catch (err) {
      // The project was deleted between the read and the insert: as if it had never been.
      if (sqlState(err) === '23503') return false;
      throw err;
    }
  }

  async deleteProjectSecret(projectId: string, name: string): Promise<boolean> {
    return (await run(this.db.pool, 'DELETE FROM project_secrets WHERE project_id = $1 AND name = $2', [projectId, name])).rowCount === 1;
  }

  async getProjectSecrets(projectId: string): Promise<ProjectSecretRecord[]> {
    const r = await run(this.db.pool, 'SELECT name, sealed, updated_at FROM project_secrets WHERE project_id = $1 ORDER BY name COLLATE "C"', [projectId]);
    return r.rows.map((x) => ({ name: x.name as string, sealed: x.sealed as Buffer, updatedAt: x.updated_at as number }));
  }

  // ---- sources and reports ----

  async unfinishedBuildsOfRef(projectId: string, ref: string): Promise<BuildRecord[]> {
    const r = await run(this.db.pool, `SELECT ${BUILD_COLS()} FROM builds WHERE source_project = $1 AND source_ref = $2 AND status IN ${UNFINISHED_SQL} ORDER BY seq`, [projectId, ref]);
    return r.rows.map(toBuild);
  }

  async listBuildsToReport(limit: number): Promise<BuildRecord[]> {
    const r = await run(
      this.db.pool,
      // The first two terms are the partial index's own condition (builds_to_report).
      `SELECT ${BUILD_COLS()} FROM builds WHERE source IS NOT NULL AND coalesce(reported, '') <> 'final'
         AND (reported IS NULL
           OR (reported = 'pending' AND status IN ('running', 'succeeded', 'failed', 'cancelled'))
           OR (reported = 'running' AND status IN ('succeeded', 'failed', 'cancelled')))
       ORDER BY seq LIMIT $1`,
      [limit],
    );
    return r.rows.map(toBuild);
  }

  async setReported(buildId: string, stage: ReportStage, checkRunId?: number): Promise<boolean> {
    // A stage below the recorded one leaves the row as it is, check run included.
    const r = await run(
      this.db.pool,
      `UPDATE builds SET
         reported = CASE WHEN ${FORWARD} THEN $1::text ELSE reported END,
         check_run_id = CASE WHEN ${FORWARD} THEN COALESCE($2::bigint, check_run_id) ELSE check_run_id END
       WHERE id = $3`,
      [stage, checkRunId ?? null, buildId],
    );
    return r.rowCount === 1;
  }
}
