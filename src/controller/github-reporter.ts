/**
 * Reports the state of builds that came from GitHub back to GitHub: a commit status per build
 * (a configured token) or a check run per build (a GitHub App), with a link to the build.
 *
 * A build is reported at up to three stages (`ReportStage`, in order): `pending` (queued,
 * assigned or preparing: a `pending` status "queued", or a check run created `queued`),
 * `running` (a `pending` status "running on <worker>", or the check run moved to `in_progress`,
 * created so when there is none yet), `final` (the status of its end, or the check run
 * completed with its conclusion and log tail). A stage may be skipped — a build that ended
 * before anyone looked goes straight to `final` — never reported twice or gone back to: a
 * build queued again after it ran still shows running until it ends.
 *
 * The store says what is left to report (`listBuildsToReport`: a build never reported, or one
 * whose state has since moved past its stage), and each report moves the build's `reported`
 * stage forward (`setReported`), so a restarted controller picks up exactly what was not
 * reported. Builds are reported oldest first, one at a time, as they are when reported, so a
 * build's stages always reach GitHub in order.
 *
 * States: `new` → `running` (`start`) ⇄ `stopped` (`stop`; `start` again when the lead returns). While running, a pass is either in
 * flight or not, and the reporter is either backing off or not:
 * - `notify()` (every build event of a build with a source), the sweep (every `sweepMs`) and the
 *   end of a back-off start a pass when none is in flight and no back-off is running; a
 *   `notify()` during a pass asks for exactly one more pass after it; `notify()` and the sweep
 *   during a back-off do nothing (its end runs the pass).
 * - A pass that meets `GITHUB_UNREACHABLE` (GitHub down, or rate-limiting) or any unexpected
 *   error stops, and the reporter backs off: `retryAfterMs` when GitHub said how long (kept
 *   within 1 s and an hour), else 1 s doubling up to 5 min; one warning per back-off. The
 *   builds stay unreported and are retried in order. Nothing here ever touches a build or throws into the build path: an
 *   outage delays statuses, never builds.
 * - `GITHUB_STATUS` (GitHub refused: no permission, repository gone) is logged with the build
 *   and the stage is marked reported anyway, so a refusal is not retried forever.
 * With the API in mode `none` (no credentials) nothing is reported or marked; `start` logs that
 * once.
 */
import type { Logger } from 'pino';
import { isFinalStatus } from '../protocol/domain.ts';
import { isExpoError } from '../protocol/errors.ts';
import type { BuildSource } from '../protocol/schemas.ts';
import type { CancelTimer, Clock } from '../sys/clock.ts';
import type { GithubApi } from '../github/api.ts';
import { buildUrl, checkRunOutput, commitState, conclusion, description, TAIL_MAX_BYTES, logTail, pendingOutput } from './github-report-text.ts';
import type { BuildRecord, ReportStage, Store } from './store/store.ts';

/** What the reporter reads and writes. */
export type ReporterStore = Pick<Store, 'listBuildsToReport' | 'setReported' | 'getBuild' | 'readLog'>;

/** How one report went: for the `expo_worker_github_reports_total` counter. */
export type GithubReportResult = 'reported' | 'refused' | 'unreachable' | 'failed';
export const GITHUB_REPORT_RESULTS = ['reported', 'refused', 'unreachable', 'failed'] as const satisfies readonly GithubReportResult[];

export interface GithubReporterOptions {
  store: ReporterStore;
  api: Pick<GithubApi, 'mode' | 'createStatus' | 'createCheckRun' | 'updateCheckRun'>;
  /** The controller's public URL (`--public-url`); links point at `<publicUrl>/builds/<id>`. Null: no links. */
  publicUrl: string | null;
  clock: Clock;
  logger: Logger;
  /** Builds read per store query. Default 50. */
  batch?: number;
  /** How often to look for builds left unreported (a missed notify, a restart), ms. Default 30 000. */
  sweepMs?: number;
  /** How long `stop` waits for the pass in flight, ms. Default 10 000. */
  stopTimeoutMs?: number;
  /** Told how each report went (metrics). */
  onReport?: (result: GithubReportResult) => void;
}

/** Each stage's place in `ReportStage` order. */
const STAGE_ORDER: Record<ReportStage, number> = { pending: 0, running: 1, final: 2 };

/** How far a build's state goes now: its end, its steps running, or anything before. */
function stageOf(b: BuildRecord): ReportStage {
  if (isFinalStatus(b.status)) return 'final';
  return b.status === 'running' ? 'running' : 'pending';
}

const BACKOFF_FIRST_MS = 1_000;
const BACKOFF_MAX_MS = 5 * 60_000;
/** A rate limit resets within the hour; a longer wait than that is a bad header. */
const RETRY_AFTER_MAX_MS = 3600_000;

type Outcome = { kind: 'done' } | { kind: 'back-off'; ms: number; err: unknown; unreachable: boolean };

export class GithubReporter {
  private readonly o: Required<Omit<GithubReporterOptions, 'onReport'>> & Pick<GithubReporterOptions, 'onReport'>;
  private state: 'new' | 'running' | 'stopped' = 'new';
  private passing: Promise<void> | null = null;
  private again = false;
  private sweepTimer: CancelTimer | null = null;
  private backOffTimer: CancelTimer | null = null;
  /** Back-offs in a row since the last report that went through. */
  private failures = 0;

  constructor(options: GithubReporterOptions) {
    this.o = { batch: 50, sweepMs: 30_000, stopTimeoutMs: 10_000, ...options };
    for (const k of ['batch', 'sweepMs', 'stopTimeoutMs'] as const) {
      if (!Number.isInteger(this.o[k]) || this.o[k] < 1) throw new Error(`GithubReporter: ${k} must be a positive integer (got ${this.o[k]})`);
    }
  }

  /**
   * Starts the sweep and a first pass (what an earlier run, or an earlier leader, left
   * unreported). Only the leader reports, so it starts again after a `stop` when the lead comes back.
   */
  start(): void {
    if (this.state === 'running') return;
    const first = this.state === 'new';
    this.state = 'running';
    if (this.o.api.mode === 'none') {
      if (first) this.o.logger.info('GitHub reports are off: no GitHub token or App is configured, so builds show no commit status or check run');
      return;
    }
    this.sweepTimer = this.o.clock.every(this.o.sweepMs, () => this.kick());
    this.kick();
  }

  /** Something happened to a build with a source: report it soon. Never throws, never waits for GitHub. */
  notify(): void {
    this.kick();
  }

  /** Stops the timers and waits (at most `stopTimeoutMs`) for the pass in flight. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    this.sweepTimer?.();
    this.backOffTimer?.();
    this.sweepTimer = this.backOffTimer = null;
    const pass = this.passing;
    if (!pass) return;
    const timeout = new AbortController();
    await Promise.race([pass, this.o.clock.sleep(this.o.stopTimeoutMs, timeout.signal).catch(() => undefined)]);
    timeout.abort();
  }

  private kick(): void {
    if (this.state !== 'running' || this.o.api.mode === 'none' || this.backOffTimer !== null) return;
    if (this.passing) {
      this.again = true;
      return;
    }
    this.passing = this.passes()
      .catch((err: unknown) => this.o.logger.error({ err }, 'GitHub reporter: unexpected error'))
      .finally(() => {
        this.passing = null;
      });
  }

  /** Passes until one ends with nothing more asked of it, or in a back-off. */
  private async passes(): Promise<void> {
    do {
      this.again = false;
      const outcome = await this.pass();
      if (outcome.kind === 'back-off') {
        this.again = false;
        this.backOff(outcome);
        return;
      }
    } while (this.again && this.state === 'running');
  }

  private async pass(): Promise<Outcome> {
    // A build comes back in a later batch only at a later stage; the same build and stage twice
    // would mean a store that does not record reports, and ends the pass rather than spin.
    const seen = new Set<string>();
    for (;;) {
      let listed: BuildRecord[];
      try {
        listed = await this.o.store.listBuildsToReport(this.o.batch);
      } catch (err) {
        return this.failed(err);
      }
      for (const b of listed) {
        if (this.state !== 'running') return { kind: 'done' };
        const stage = stageOf(b);
        if (seen.has(`${b.id} ${stage}`)) return { kind: 'done' };
        seen.add(`${b.id} ${stage}`);
        const outcome = await this.reportOne(b.id);
        if (outcome.kind === 'back-off') return outcome;
      }
      if (listed.length < this.o.batch) return { kind: 'done' };
    }
  }

  /** Reports one build as it is now (re-read: it may have moved on since it was listed). */
  private async reportOne(buildId: string): Promise<Outcome> {
    let stage: ReportStage = 'pending';
    try {
      const b = await this.o.store.getBuild(buildId);
      if (b === null || b.source === null) return { kind: 'done' };
      stage = stageOf(b);
      if (b.reported !== null && STAGE_ORDER[b.reported] >= STAGE_ORDER[stage]) return { kind: 'done' };
      const checkRunId = await this.send(b, b.source, stage);
      await this.o.store.setReported(b.id, stage, checkRunId);
      this.o.logger.debug({ buildId, stage, repo: b.source.repo, sha: b.source.sha }, 'reported to GitHub');
      this.recovered();
      this.o.onReport?.('reported');
      return { kind: 'done' };
    } catch (err) {
      if (isExpoError(err, 'GITHUB_STATUS')) {
        this.o.onReport?.('refused');
        this.o.logger.warn({ buildId, stage, status: err.details.status, err }, `GitHub refused the ${stage} report of build ${buildId}; it is not retried`);
        try {
          await this.o.store.setReported(buildId, stage);
        } catch (storeErr) {
          return this.failed(storeErr);
        }
        return { kind: 'done' };
      }
      return this.failed(err);
    }
  }

  /** Posts the report; the check run's id in App mode. */
  private async send(b: BuildRecord, source: BuildSource, stage: ReportStage): Promise<number | undefined> {
    const { repo, sha, name } = source;
    const context = `expo-worker/${name}`;
    const link = buildUrl(this.o.publicUrl, b.id);
    const mode = this.o.api.mode;
    switch (mode) {
      case 'none':
        return undefined;
      case 'token':
        await this.o.api.createStatus(repo, sha, { state: commitState(b), context, description: description(b), targetUrl: link });
        return undefined;
      case 'app': {
        if (stage !== 'final') {
          const status = stage === 'running' ? 'in_progress' : 'queued';
          if (b.checkRunId !== null) {
            await this.o.api.updateCheckRun(repo, b.checkRunId, { status, output: pendingOutput(b), detailsUrl: link });
            return b.checkRunId;
          }
          return this.o.api.createCheckRun(repo, { name: context, headSha: sha, status, externalId: b.id, detailsUrl: link, output: pendingOutput(b) });
        }
        const output = checkRunOutput(b, await this.logTail(b), link);
        if (b.checkRunId !== null) {
          await this.o.api.updateCheckRun(repo, b.checkRunId, { status: 'completed', conclusion: conclusion(b), output, detailsUrl: link });
          return b.checkRunId;
        }
        return this.o.api.createCheckRun(repo, { name: context, headSha: sha, status: 'completed', conclusion: conclusion(b), externalId: b.id, detailsUrl: link, output });
      }
      default: {
        const never: never = mode;
        throw new Error(`unknown GitHub API mode ${String(never)}`);
      }
    }
  }

  /** The end of the build's log, read from at most `TAIL_MAX_BYTES` before its end. */
  private async logTail(b: BuildRecord): Promise<string> {
    const from = Math.max(0, b.logBytes - TAIL_MAX_BYTES);
    return logTail(await this.o.store.readLog(b.id, from), from > 0);
  }

  private failed(err: unknown): Outcome {
    const unreachable = isExpoError(err, 'GITHUB_UNREACHABLE');
    this.o.onReport?.(unreachable ? 'unreachable' : 'failed');
    const retryAfterMs = unreachable ? (err.details as { retryAfterMs?: unknown }).retryAfterMs : undefined;
    const ms =
      typeof retryAfterMs === 'number' && Number.isFinite(retryAfterMs) && retryAfterMs > 0
        ? Math.min(Math.max(retryAfterMs, BACKOFF_FIRST_MS), RETRY_AFTER_MAX_MS)
        : Math.min(BACKOFF_FIRST_MS * 2 ** Math.min(this.failures, 20), BACKOFF_MAX_MS);
    return { kind: 'back-off', ms, err, unreachable };
  }

  private backOff(o: Extract<Outcome, { kind: 'back-off' }>): void {
    if (this.state !== 'running') return;
    this.failures++;
    const s = Math.ceil(o.ms / 1000);
    if (o.unreachable) this.o.logger.warn({ err: o.err, retryInMs: o.ms }, `GitHub is unreachable or rate-limiting; build reports wait ${s} s (builds are not affected)`);
    else this.o.logger.error({ err: o.err, retryInMs: o.ms }, `reporting builds to GitHub failed; retrying in ${s} s`);
    this.backOffTimer = this.o.clock.after(o.ms, () => {
      this.backOffTimer = null;
      this.kick();
    });
  }

  private recovered(): void {
    if (this.failures === 0) return;
    this.failures = 0;
    this.o.logger.info('GitHub reachable again; build reports resumed');
  }
}
