/**
 * Retention: final builds (succeeded, failed, cancelled) that finished more than the retention
 * age ago are deleted with their attempts, log chunks, artifact records and artifact files; and
 * what an upload cut short by a SIGKILLed agent or controller leaves (a local `.partial` file, an
 * S3 multipart upload never completed) is removed once old enough that no upload can still be
 * writing it. Queued and active
 * builds are never touched, however old. Each scheduled run also deletes expired dashboard sessions.
 *
 * Runs on a schedule (node-cron, hourly by default, never two runs at once) and on demand
 * (`POST /api/v1/admin/prune`, `expo-worker prune`), in batches with a turn of the event loop
 * between them, so a large prune never holds up heartbeats for long. SQLite reuses the freed
 * pages for new data; the file does not shrink (see docs/operations.md).
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import cron, { type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';
import type { PruneResult } from '../protocol/schemas.ts';
import type { Store } from './store/store.ts';
import type { ArtifactBlobs } from './artifact-blobs.ts';

const DAY_MS = 24 * 3600 * 1000;

/** What a prune reads and deletes. */
export type RetentionStore = Pick<Store, 'findPrunableBuilds' | 'deleteBuilds' | 'countDeliveriesBefore' | 'deleteDeliveriesBefore' | 'deleteExpiredSessions'>;

export interface RetentionOptions {
  store: RetentionStore;
  /** Where artifact files live (a directory or a bucket). */
  blobs: Pick<ArtifactBlobs, 'removeBuild' | 'removeAbandoned'>;
  /** Final builds older than this many days are pruned by the schedule; 0 keeps them forever. */
  retentionDays: number;
  /** Abandoned uploads (`.partial` files, incomplete multipart uploads) older than this are removed by the schedule, ms. Default one hour. */
  partialMaxAgeMs?: number;
  /** Builds deleted per transaction. Default 100. */
  batchSize?: number;
  now: () => number;
  logger: Logger;
}

export class Retention {
  private readonly o: Required<RetentionOptions>;
  private task: ScheduledTask | null = null;

  constructor(options: RetentionOptions) {
    this.o = { partialMaxAgeMs: 3600_000, batchSize: 100, ...options };
  }

  get retentionDays(): number {
    return this.o.retentionDays;
  }

  /** How old an unfinished upload must be before the schedule removes it, ms. */
  get abandonedMaxAgeMs(): number {
    return this.o.partialMaxAgeMs;
  }

  /**
   * Counts (dry run) or deletes the final builds that finished more than `olderThanDays` ago, and
   * the GitHub webhook deliveries received before the same cutoff.
   */
  async prune(olderThanDays: number, dryRun: boolean): Promise<PruneResult> {
    const cutoff = this.o.now() - olderThanDays * DAY_MS;
    const result: PruneResult = { dryRun, olderThanDays, cutoff: new Date(cutoff).toISOString(), builds: 0, logBytes: 0, artifacts: 0, artifactBytes: 0, webhookDeliveries: 0 };
    if (dryRun) {
      for (const b of await this.o.store.findPrunableBuilds(cutoff)) add(result, b);
      result.webhookDeliveries = await this.o.store.countDeliveriesBefore(cutoff);
      return result;
    }
    for (;;) {
      const batch = await this.o.store.findPrunableBuilds(cutoff, this.o.batchSize);
      if (batch.length === 0) break;
      // Files first: they are what takes the space, and on a full disk the database cannot
      // delete a row until there is room for its write-ahead log. A final build never becomes
      // active again, so its files are no longer written; until its records go too (this
      // transaction, or the next prune if it fails) a download of a removed file is 404.
      // A build whose files could not be removed (a bucket out of reach) keeps its records, so
      // the next prune tries again rather than leaving its files with nothing pointing at them.
      const filesGone: string[] = [];
      for (const b of batch) {
        try {
          await this.o.blobs.removeBuild(b.id);
          filesGone.push(b.id);
        } catch (err) {
          this.o.logger.warn({ err, buildId: b.id }, 'pruning build: its artifact files could not be removed');
        }
      }
      if (filesGone.length === 0) break;
      const deleted = new Set(await this.o.store.deleteBuilds(filesGone));
      for (const b of batch.filter((b) => deleted.has(b.id))) add(result, b);
      if (deleted.size === 0) break;
      await nextTurn();
    }
    // After the builds, whose files free the space a full disk needs for any delete: one small
    // row per delivery, indexed by time, in one statement.
    result.webhookDeliveries = await this.o.store.deleteDeliveriesBefore(cutoff);
    return result;
  }

  /** Removes what uploads cut short left (`.partial` files, incomplete multipart uploads) more than `olderThanMs` ago. */
  async removeAbandoned(olderThanMs: number): Promise<{ files: number; bytes: number }> {
    return this.o.blobs.removeAbandoned(olderThanMs);
  }

  /** One scheduled run: expired dashboard sessions, abandoned uploads, then (unless retention is 0) old builds. Never throws. */
  async runScheduled(): Promise<void> {
    try {
      // A session is deleted when presented after its expiry; one never presented again (most
      // of them) would stay forever without this.
      const sessions = await this.o.store.deleteExpiredSessions(this.o.now());
      if (sessions > 0) this.o.logger.info({ sessions }, 'removed expired dashboard sessions');
      const partials = await this.removeAbandoned(this.o.partialMaxAgeMs);
      if (partials.files > 0) this.o.logger.info(partials, 'removed abandoned .partial artifact files');
      if (this.o.retentionDays > 0) {
        const r = await this.prune(this.o.retentionDays, false);
        if (r.builds > 0 || r.webhookDeliveries > 0) {
          this.o.logger.info(r, `retention: pruned ${r.builds} builds and ${r.webhookDeliveries} webhook deliveries older than ${this.o.retentionDays} days`);
        }
      }
    } catch (err) {
      this.o.logger.error({ err }, 'retention run failed');
    }
  }

  /** Runs `runScheduled` on a cron schedule until `stop`. */
  start(schedule: string): void {
    this.task ??= cron.schedule(schedule, () => this.runScheduled(), { noOverlap: true });
  }

  async stop(): Promise<void> {
    const t = this.task;
    this.task = null;
    await t?.stop();
  }
}

function add(r: PruneResult, b: { logBytes: number; artifacts: number; artifactBytes: number }): void {
  r.builds++;
  r.logBytes += b.logBytes;
  r.artifacts += b.artifacts;
  r.artifactBytes += b.artifactBytes;
}
