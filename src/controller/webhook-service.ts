/**
 * GitHub webhook deliveries, once their signature holds: each is recorded once (a redelivery of
 * the same `X-GitHub-Delivery` changes nothing), answered at once, and worked on after the
 * answer — GitHub gives a delivery 10 s, and reading the pipeline file is a call to GitHub.
 *
 * Accepting: the payload is read for what it asks (`workOf`: a push, a pull request opened or
 * updated, a check run to run again — each checked to fit its event) and whether a project
 * builds its repository. A delivery with nothing to build is recorded `ignored` with the reason
 * and logged; one with work is recorded `pending` with that work (never the payload).
 *
 * Working, one delivery at a time in the order received (so a later push supersedes an earlier
 * one's builds, never the reverse), and again after a restart for whatever is still pending:
 * 1. a rerun (`check_run.rerequested`) makes a new build of the run's build;
 * 2. else the pipeline file is read at the commit through GitHub's contents API and parsed in a
 *    worker thread; no file, or a file with errors, builds nothing and says so on the commit;
 * 3. the builds its `on:` selects for the event are made, each with the project's secrets it
 *    names (a missing secret fails that build's status, not the others), after the unfinished
 *    builds of the commit the push replaced (its `before`) on that ref are superseded (when the
 *    project says so).
 * While GitHub cannot be reached the delivery stays pending and is tried again with backoff;
 * after `maxPendingMs` (a day) it is settled `failed`. A failed delivery is tried again when
 * GitHub redelivers it (its **Redeliver** button); any other redelivery is a duplicate. A restart between making builds and settling the
 * delivery makes no build twice: builds already made for the delivery are found by their source.
 *
 * Several controllers on one database: the one that accepts a delivery works on it at once,
 * leader or not. Only the leader (`start` … `pause`) retries, sweeps every `sweepMs` for what was
 * left pending, and works on another controller's delivery — once it is `handoffMs` old, so that
 * two controllers do not work on one delivery at the same time.
 */
import type { Logger } from 'pino';
import { isExpoError } from '../protocol/errors.ts';
import type { BuildSource, CreateBuildBody } from '../protocol/schemas.ts';
import type { Clock, CancelTimer } from '../sys/clock.ts';
import type { GithubApi } from '../github/api.ts';
import { pipelineEventOf, workOf, type DeliveryWork } from '../github/delivery-work.ts';
import { deliverySummary } from '../github/webhook-signature.ts';
import { PIPELINE_LIMITS, triggers, type PipelineError } from '../github/pipeline.ts';
import { parsePipelineIsolated } from '../github/pipeline-isolated.ts';
import type { BuildRecord, DeliveryRecord, ProjectRecord, Store } from './store/store.ts';

export type WebhookStore = Pick<Store, 'recordDelivery' | 'reopenDelivery' | 'listDeliveries' | 'listPendingDeliveries' | 'settleDelivery' | 'listBuilds' | 'getBuild' | 'diskError'>;

/** The projects as deliveries need them (ProjectService). */
export interface DeliveryProjects {
  byRepo(repo: string): Promise<ProjectRecord | null>;
  secretValues(projectId: string, names: readonly string[]): Promise<{ values: Record<string, string>; missing: string[] }>;
}

/** The builds as deliveries make them (BuildService). */
export interface DeliveryBuilds {
  submit(body: CreateBuildBody, source?: BuildSource): Promise<BuildRecord>;
  rerun(id: string): Promise<BuildRecord>;
  supersede(projectId: string, ref: string, olderSha: string, bySha: string): Promise<string[]>;
}

/** A verified delivery: its headers' id (lower-case) and event. */
export interface VerifiedDelivery {
  id: string;
  event: string;
}

export interface WebhookServiceOptions {
  store: WebhookStore;
  projects: DeliveryProjects;
  builds: DeliveryBuilds;
  github: Pick<GithubApi, 'mode' | 'getFile' | 'createStatus' | 'createCheckRun'>;
  /** Where repositories are cloned from (`--github-web-url`): a clone URL elsewhere is refused — the checkout token would go there. */
  webUrl: string;
  /** The controller as users reach it, for links on GitHub; null when not configured. */
  publicUrl: string | null;
  clock: Clock;
  logger: Logger;
  /** How long a delivery may wait for GitHub before it is settled `failed`, ms. Default a day. */
  maxPendingMs?: number;
  /** The first wait after GitHub could not be reached, ms (doubling to 5 min). Default 1 000. */
  retryBaseMs?: number;
  /** How long a pipeline file may take to parse, ms. Default 10 000. */
  parseTimeoutMs?: number;
  /** How often the leader looks for deliveries left pending (by a controller that could not reach GitHub), ms. Default 60 000. */
  sweepMs?: number;
  /**
   * How old a pending delivery that another controller accepted must be before the leader works
   * on it (that controller may be working on it still), ms. Default 0: one controller alone.
   */
  handoffMs?: number;
}

/** The context of what a delivery (rather than one build) has to say on a commit. */
export const DELIVERY_CONTEXT = 'expo-worker';
const MAX_RETRY_MS = 5 * 60_000;
/** The errors a delivery's record keeps (its reason), and a status's description, at most. */
const REASON_ERRORS = 5;

/** Why a delivery still waits: GitHub could not be reached. */
class GithubLater extends Error {
  readonly retryAfterMs: number | null;
  constructor(message: string, retryAfterMs: number | null) {
    super(message);
    this.retryAfterMs = retryAfterMs;
  }
}

const sha12 = (sha: string): string => sha.slice(0, 12);
const errorLine = (e: PipelineError): string => `line ${e.line}${e.path ? ` (${e.path})` : ''}: ${e.message}`;

export class WebhookService {
  private readonly o: WebhookServiceOptions;
  private pass: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private retryTimer: CancelTimer | null = null;
  private sweepTimer: CancelTimer | null = null;
  private failures = 0;
  /** Whether this controller leads: it works on every pending delivery, sweeps and retries. */
  private leading = false;
  /** Deliveries accepted here and not yet worked on: what a controller that does not lead works on. */
  private readonly mine = new Set<string>();

  constructor(options: WebhookServiceOptions) {
    this.o = options;
  }

  /**
   * Records the delivery with what it asks; `duplicate` when its id was already recorded (then
   * nothing is written or logged at info). Work, if any, starts after this returns.
   */
  async accept(d: VerifiedDelivery, payload: Record<string, unknown>): Promise<{ duplicate: boolean; record: DeliveryRecord }> {
    const summary = deliverySummary(payload);
    const at = this.o.clock.now();
    const record = await this.recordOf(d, summary, payload, at);
    const isNew = await this.o.store.recordDelivery(record);
    // GitHub's Redeliver of a delivery that failed (GitHub down for a day, a secret that could
    // not be opened…) is the way to try it again: it is worked on anew.
    if (!isNew && record.outcome === 'pending' && (await this.o.store.reopenDelivery(record))) {
      this.o.logger.info({ delivery: d.id, event: d.event, repository: summary.repository }, 'webhook redelivery of a failed delivery: trying it again');
      this.mine.add(record.id);
      this.kick();
      return { duplicate: false, record };
    }
    if (!isNew) {
      this.o.logger.debug({ delivery: d.id, event: d.event }, 'webhook redelivery: already recorded');
      return { duplicate: true, record };
    }
    const fields = { delivery: d.id, event: d.event, action: summary.action, repository: summary.repository, outcome: record.outcome };
    if (record.outcome === 'ignored') this.o.logger.info(fields, `webhook delivery ignored: ${record.reason}`);
    else {
      this.o.logger.info(fields, 'webhook delivery accepted');
      this.mine.add(record.id);
      this.kick();
    }
    return { duplicate: false, record };
  }

  /**
   * What to record of a delivery: ignored with the reason, or pending with its work. A
   * repository without a project is said first — the most common reason, and the one to fix.
   */
  private async recordOf(d: VerifiedDelivery, summary: { action: string | null; repository: string | null }, payload: Record<string, unknown>, at: number): Promise<DeliveryRecord> {
    const base = { ...d, ...summary, receivedAt: at, work: null, builds: [] };
    const project = summary.repository === null ? null : await this.o.projects.byRepo(summary.repository);
    if (summary.repository !== null && project === null) return { ...base, outcome: 'ignored', reason: `no project for ${summary.repository}` };
    const found = workOf(d.event, payload);
    if ('ignore' in found) return { ...base, outcome: 'ignored', reason: found.ignore };
    return { ...base, outcome: 'pending', reason: 'waiting to be worked on', work: found.work };
  }

  /** The newest recorded deliveries first, at most `limit`. */
  async list(limit: number): Promise<DeliveryRecord[]> {
    return this.o.store.listDeliveries(limit);
  }

  /**
   * This controller leads: it picks up what a previous run or another controller left pending,
   * now and every `sweepMs`, and retries after GitHub could not be reached. A controller that
   * does not lead still works on the deliveries it accepts, once; what it could not finish is
   * left pending for the leader.
   */
  start(): void {
    if (this.stopped || this.leading) return;
    this.leading = true;
    this.sweepTimer = this.o.clock.every(this.o.sweepMs ?? 60_000, () => this.kick());
    this.kick();
  }

  /** The lead is lost: no sweep, no retry (a pass in flight finishes). */
  pause(): void {
    this.leading = false;
    this.sweepTimer?.();
    this.retryTimer?.();
    this.sweepTimer = this.retryTimer = null;
  }

  /** Asks for a pass over the pending deliveries: one runs at a time, and one more follows a pass that was asked for during it. */
  kick(): void {
    if (this.stopped) return;
    if (this.pass !== null) {
      this.again = true;
      return;
    }
    this.retryTimer?.();
    this.retryTimer = null;
    this.pass = this.run().finally(() => {
      this.pass = null;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  /** Resolves once no pass runs and none is asked for (tests; shutdown). */
  async idle(): Promise<void> {
    while (this.pass !== null) await this.pass;
  }

  /**
   * Stops: no new pass; waits for the one in flight, at most `timeoutMs` (a call to GitHub may
   * hang to its own timeout). Pending deliveries stay pending for the next start; one whose
   * builds were queued but not yet recorded is settled then without queueing them twice.
   */
  async stop(timeoutMs = 10_000): Promise<void> {
    this.stopped = true;
    this.pause();
    let cancel = (): void => undefined;
    await Promise.race([this.idle(), new Promise<void>((resolve) => (cancel = this.o.clock.after(timeoutMs, resolve)))]);
    cancel();
  }

  private async run(): Promise<void> {
    try {
      for (;;) {
        // Filtered in the query, before its limit: 20 older deliveries this controller may not
        // touch yet (others', inside the handoff time) must not hide its own newer one.
        const receivedBefore = this.leading ? this.o.clock.now() - (this.o.handoffMs ?? 0) : null;
        const pending = (await this.o.store.listPendingDeliveries(20, { ids: [...this.mine], receivedBefore })).filter((d) => this.mayWork(d));
        if (pending.length === 0 || this.stopped) break;
        for (const d of pending) {
          if (this.stopped) return;
          await this.work(d);
          this.mine.delete(d.id);
        }
      }
      this.failures = 0;
    } catch (err) {
      // Not leading: what is left is the leader's to retry.
      if (!this.leading) this.mine.clear();
      if (err instanceof GithubLater) {
        this.failures++;
        const base = this.o.retryBaseMs ?? 1000;
        // GitHub's reset time, never less than the base wait (a clock skewed near the reset says 0).
        const wait = Math.max(base, err.retryAfterMs ?? Math.min(MAX_RETRY_MS, base * 2 ** (this.failures - 1)));
        this.o.logger.warn({ retryInMs: wait }, `webhook deliveries wait for GitHub: ${err.message}`);
        this.retryLater(wait);
      } else {
        this.o.logger.error({ err }, 'working on webhook deliveries failed');
        this.retryLater(Math.min(MAX_RETRY_MS, (this.o.retryBaseMs ?? 1000) * 10));
      }
    }
  }

  /** Whether this pass works on `d`: ours always; another's only when leading and after the handoff time. */
  private mayWork(d: DeliveryRecord): boolean {
    if (this.mine.has(d.id)) return true;
    return this.leading && this.o.clock.now() - d.receivedAt >= (this.o.handoffMs ?? 0);
  }

  private retryLater(ms: number): void {
    if (this.stopped || !this.leading) return;
    this.retryTimer = this.o.clock.after(ms, () => {
      this.retryTimer = null;
      this.kick();
    });
  }

  /** Works on one pending delivery and settles it; throws GithubLater to leave it (and the rest) pending. */
  private async work(d: DeliveryRecord): Promise<void> {
    const settle = async (outcome: 'built' | 'ignored' | 'failed', reason: string, builds: string[] = []): Promise<void> => {
      if (!(await this.o.store.settleDelivery(d.id, outcome, reason, builds))) return;
      const level = outcome === 'failed' ? 'warn' : 'info';
      this.o.logger[level]({ delivery: d.id, event: d.event, repository: d.repository, outcome, builds }, `webhook delivery ${outcome}: ${reason}`);
    };
    const w = d.work;
    if (w === null) return settle('ignored', 'nothing to build');
    try {
      const project = await this.o.projects.byRepo(w.repo);
      if (project === null) return await settle('ignored', `no project for ${w.repo} (removed since the delivery)`);
      if (w.event === 'check_run') return await this.rerun(d, w, settle);
      // The clone URL must be the repository's own on the configured GitHub: the checkout token
      // goes there, and the builds get this project's secrets.
      const expected = `${this.o.webUrl.replace(/\/+$/, '')}/${w.repo}.git`;
      if (w.cloneUrl.toLowerCase() !== expected.toLowerCase()) {
        return await settle('failed', `the clone URL ${w.cloneUrl} is not ${expected} (--github-web-url and the repository); the checkout token is only sent there`);
      }
      const made = await this.build(d, w, project);
      return await settle(made.outcome, made.reason, made.builds);
    } catch (err) {
      if (!(err instanceof GithubLater)) {
        // The disk may free up: the delivery waits. Anything else would fail again the same way
        // (a secret that cannot be opened, a build refused): settled, so it blocks no other.
        if (this.o.store.diskError(err) !== null || isExpoError(err, 'STORE_FULL')) throw err;
        this.o.logger.error({ err, delivery: d.id }, 'working on a webhook delivery failed');
        return settle('failed', `could not be worked on: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (this.o.clock.now() - d.receivedAt >= (this.o.maxPendingMs ?? 24 * 3600_000)) {
        return settle('failed', `GitHub could not be reached for ${Math.round((this.o.clock.now() - d.receivedAt) / 60_000)} min: ${err.message}`);
      }
      throw err;
    }
  }

  private async rerun(d: DeliveryRecord, w: DeliveryWork, settle: (o: 'built' | 'ignored' | 'failed', reason: string, builds?: string[]) => Promise<void>): Promise<void> {
    const original = w.rerunOf!;
    // Only a build of this very repository and commit: a signed check_run body must not rerun
    // another project's build (nor an API build).
    const was = await this.o.store.getBuild(original);
    const project = await this.o.projects.byRepo(w.repo);
    if (was === null || was.source === null || project === null || was.source.projectId !== project.id || was.source.sha !== w.sha) {
      return settle('ignored', `check run rerequested for build ${original}: not a build of ${w.repo} at ${sha12(w.sha)}`);
    }
    const existing = (await this.o.store.listBuilds({ limit: 1000, repo: w.repo, sha: w.sha })).find((b) => b.source?.deliveryId === d.id && b.source.rerunOf === original);
    if (existing) return settle('built', `rerun of ${original}`, [existing.id]);
    try {
      const made = await this.o.builds.rerun(original);
      return settle('built', `rerun of ${original}`, [made.id]);
    } catch (err) {
      if (isExpoError(err)) return settle('ignored', `check run rerequested for build ${original}: ${err.message}`);
      throw err;
    }
  }

  /** Reads the pipeline file at the commit and makes the builds it selects for the event. */
  private async build(d: DeliveryRecord, w: DeliveryWork, project: ProjectRecord): Promise<{ outcome: 'built' | 'ignored' | 'failed'; reason: string; builds: string[] }> {
    const event = pipelineEventOf(w);
    if (event === null) return { outcome: 'ignored', reason: `${w.event} ${w.ref} builds nothing`, builds: [] };
    // The same commit on the same ref built already, by another delivery: a replay of a signed
    // body under a new delivery id (GitHub signs the body only) builds nothing twice. A rerun
    // builds a commit again on purpose; a cancelled build (superseded, say) does not count.
    // One read serves both checks: builds of this commit on this ref, by other deliveries and by this one.
    const ofCommit = (await this.o.store.listBuilds({ limit: 1000, repo: w.repo, ref: w.ref, sha: w.sha })).filter((b) => b.source !== null && b.source.rerunOf === null);
    const earlier = ofCommit.find((b) => b.source!.deliveryId !== d.id && b.status !== 'cancelled');
    if (earlier !== undefined) {
      return { outcome: 'ignored', reason: `${w.ref} at ${sha12(w.sha)} was built already (build ${earlier.id}, delivery ${earlier.source!.deliveryId ?? '?'}); rerun a build to build it again`, builds: [] };
    }
    const path = project.pipelinePath;
    let text: string | null;
    try {
      text = await this.o.github.getFile(w.repo, path, w.sha, PIPELINE_LIMITS.maxFileBytes);
    } catch (err) {
      if (isExpoError(err, 'GITHUB_UNREACHABLE')) throw new GithubLater(err.message, typeof err.details.retryAfterMs === 'number' ? err.details.retryAfterMs : null);
      if (isExpoError(err, 'GITHUB_STATUS') && err.details.tooLarge === true) {
        const reason = `${path} at ${sha12(w.sha)} is larger than ${PIPELINE_LIMITS.maxFileBytes / 1024} KiB; it is not read`;
        await this.say(w, 'error', reason, [reason]);
        return { outcome: 'failed', reason, builds: [] };
      }
      if (isExpoError(err, 'GITHUB_STATUS')) return { outcome: 'failed', reason: `reading ${path} at ${sha12(w.sha)}: ${err.message}`, builds: [] };
      throw err;
    }
    if (text === null) {
      const reason = `no ${path} at ${sha12(w.sha)}: nothing to build`;
      await this.say(w, 'error', reason, [`The commit has no \`${path}\`, so expo-worker builds nothing for it. Add the file (docs/pipeline-file.md) to build this repository.`]);
      return { outcome: 'ignored', reason, builds: [] };
    }
    const parsed = await parsePipelineIsolated(text, { timeoutMs: this.o.parseTimeoutMs });
    if (!parsed.ok) {
      const lines = parsed.errors.map(errorLine);
      const more = lines.length > REASON_ERRORS ? ` (and ${lines.length - REASON_ERRORS} more)` : '';
      const reason = `${path} at ${sha12(w.sha)} is invalid: ${lines.slice(0, REASON_ERRORS).join('; ')}${more}`;
      await this.say(w, 'error', `${path} is invalid: ${lines[0]}${lines.length > 1 ? ` (+${lines.length - 1} more)` : ''}`, lines);
      return { outcome: 'failed', reason, builds: [] };
    }
    const selected = triggers(parsed.pipeline, event);
    if (selected.length === 0) return { outcome: 'ignored', reason: `no build of ${path} runs on ${describe(event)}`, builds: [] };

    // Only the commit this push replaced (its `before`): deliveries may arrive out of order, and a
    // late older push must not cancel a newer commit's builds.
    if (project.supersede && w.before != null) {
      const superseded = await this.o.builds.supersede(project.id, w.ref, w.before, w.sha);
      if (superseded.length > 0) this.o.logger.info({ delivery: d.id, ref: w.ref, sha: w.sha, superseded }, `superseded ${superseded.length} build(s) of ${w.ref}`);
    }
    // Builds this delivery already made (a restart between making them and settling it).
    const made = new Map(ofCommit.filter((b) => b.source!.deliveryId === d.id).map((b) => [b.source!.name, b.id]));
    const builds: string[] = [];
    const problems: string[] = [];
    for (const p of selected) {
      const done = made.get(p.name);
      if (done !== undefined) {
        builds.push(done);
        continue;
      }
      const { values, missing } = await this.o.projects.secretValues(project.id, p.secrets);
      if (missing.length > 0) {
        const why = `build ${p.name}: the project has no secret ${missing.join(', ')} (set it with expo-worker project secret set ${project.repo} NAME)`;
        problems.push(why);
        await this.say(w, 'error', why, [why], `${DELIVERY_CONTEXT}/${p.name}`);
        continue;
      }
      const source: BuildSource = {
        projectId: project.id,
        repo: project.repo,
        name: p.name,
        event: w.event === 'pull_request' ? 'pull_request' : 'push',
        ref: w.ref,
        sha: w.sha,
        prNumber: w.prNumber,
        deliveryId: d.id,
        rerunOf: null,
        cloneUrl: w.cloneUrl,
        checkout: p.checkout ?? { submodules: false, lfs: false },
      };
      const body: CreateBuildBody = { ...p.build, ...(Object.keys(values).length > 0 ? { secretEnv: values } : {}) };
      try {
        builds.push((await this.o.builds.submit(body, source)).id);
      } catch (err) {
        if (!isExpoError(err) || err.status === 0 || err.status >= 500) throw err;
        const why = `build ${p.name}: ${err.message}`;
        problems.push(why);
        await this.say(w, 'error', why, [why], `${DELIVERY_CONTEXT}/${p.name}`);
      }
    }
    const names = selected.map((p) => p.name).join(', ');
    if (builds.length === 0) return { outcome: 'failed', reason: problems.join('; '), builds };
    return { outcome: 'built', reason: `${names} from ${sha12(w.sha)}${problems.length > 0 ? `; ${problems.join('; ')}` : ''}`, builds };
  }

  /**
   * Says something about the commit on GitHub that no build will: a commit status (or, for a
   * GitHub App, a completed check run with every line in its output). A failure is logged and
   * otherwise ignored — it must not hold up the delivery's builds.
   */
  private async say(w: DeliveryWork, state: 'error' | 'failure', description: string, lines: string[], context = DELIVERY_CONTEXT): Promise<void> {
    if (this.o.github.mode === 'none') return;
    const targetUrl = this.o.publicUrl === null ? null : `${this.o.publicUrl.replace(/\/+$/, '')}/`;
    try {
      if (this.o.github.mode === 'app') {
        await this.o.github.createCheckRun(w.repo, {
          name: context,
          headSha: w.sha,
          status: 'completed',
          conclusion: 'failure',
          externalId: '',
          detailsUrl: targetUrl,
          output: { title: clip(description, 255), summary: lines.map((l) => `- ${l}`).join('\n') },
        });
      } else {
        await this.o.github.createStatus(w.repo, w.sha, { state, context, description: clip(description, 140), targetUrl });
      }
    } catch (err) {
      this.o.logger.warn({ err: isExpoError(err) ? { code: err.code, message: err.message } : err, repo: w.repo, sha: w.sha }, `could not report on the commit: ${description}`);
    }
  }
}

const clip = (s: string, n: number): string => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

function describe(event: NonNullable<ReturnType<typeof pipelineEventOf>>): string {
  switch (event.kind) {
    case 'push':
      return `a push to ${event.branch}`;
    case 'tag':
      return `the tag ${event.tag}`;
    case 'pull_request':
      return `a pull request into ${event.baseBranch}`;
  }
}
