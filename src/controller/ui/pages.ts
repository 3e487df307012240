/**
 * The dashboard's pages (GET): overview, builds, one build (and older parts of its log), workers,
 * queue, projects, tokens and audit. Each reads through the services the API uses and renders
 * ui/views/<page>.eta in the layout; the build and worker tables also answer their rows alone
 * (`?fragment=rows`) for htmx's live refresh.
 */
import { BUILD_STATUSES, GIT_REF_PATTERN, REPO_PATTERN, type BuildStatus } from '../../protocol/domain.ts';
import { ExpoError } from '../../protocol/errors.ts';
import { ROUTES } from '../../protocol/routes.ts';
import { route, type App } from '../route.ts';
import type { BuildRecord } from '../store/store.ts';
import { projectView, workerStatus } from '../views.ts';
import { whyWaiting, type WorkerLoad } from '../waiting.ts';
import { overviewModel, type OverviewModel } from './overview.ts';
import { buildDuration, failureWords, sourceWords, stepDurationWords, timeWords } from './format.ts';
import { TAIL_WINDOW_BYTES, logWindow } from './log-html.ts';
import type { UiContext } from './context.ts';
import { tokensPage } from './tokens-page.ts';

/** How many builds the builds page lists. */
const BUILDS_PAGE_SIZE = 100;
/** How many queued builds the queue page lists. */
const QUEUE_PAGE_SIZE = 500;
/** How many audit entries one audit page shows. */
const AUDIT_PAGE_SIZE = 50;

/** A build as a table row shows it. */
export interface BuildRow {
  id: string;
  status: BuildStatus;
  source: string;
  duration: string;
  workerId: string | null;
  created: string;
  waiting: string | null;
}

export function pageRoutes(app: App, ctx: UiContext): void {
  const rowsOf = async (builds: BuildRecord[]): Promise<BuildRow[]> => {
    let loads: WorkerLoad[] | undefined;
    if (builds.some((b) => b.status === 'queued')) loads = await ctx.workers.loads();
    const now = ctx.now();
    return builds.map((b) => ({
      id: b.id,
      status: b.status,
      source: sourceWords(b),
      duration: buildDuration(b, now),
      workerId: b.workerId,
      created: timeWords(b.createdAt),
      waiting: b.status === 'queued' && loads ? whyWaiting(b, loads).message : null,
    }));
  };

  route(app, ROUTES.uiOverview, {}, async (req, reply) => {
    const counts = await ctx.store.countBuildsByStatus();
    let overview: OverviewModel | null = null;
    try {
      overview = await overviewModel(ctx.store, ctx.now());
    } catch (err) {
      // The counts and links still help while the plots cannot be drawn; the log says why.
      req.log.error({ err }, 'overview plots failed');
    }
    return ctx.page(reply, 200, 'overview', { title: 'Overview', nav: 'overview', viewer: ctx.viewer(req), counts, statuses: BUILD_STATUSES, overview });
  });

  route(app, ROUTES.uiBuilds, {}, async (req, reply) => {
    const q = req.query;
    const status = blankToUndefined(q.status);
    const repo = blankToUndefined(q.repo);
    const ref = blankToUndefined(q.ref);
    if (status !== undefined && !(BUILD_STATUSES as readonly string[]).includes(status)) throw new ExpoError('API_BAD_REQUEST', `status must be one of ${BUILD_STATUSES.join(', ')}`);
    if (repo !== undefined && !new RegExp(REPO_PATTERN).test(repo)) throw new ExpoError('API_BAD_REQUEST', 'repo must be owner/name');
    if (ref !== undefined && !new RegExp(GIT_REF_PATTERN).test(ref)) throw new ExpoError('API_BAD_REQUEST', 'ref must be a full git ref (refs/heads/main)');
    const builds = await ctx.builds.listBuilds({ status: status as BuildStatus | undefined, repo, ref, limit: BUILDS_PAGE_SIZE });
    const rows = await rowsOf(builds);
    const search = new URLSearchParams();
    for (const [k, v] of Object.entries({ status, repo, ref })) if (v !== undefined) search.set(k, v);
    search.set('fragment', 'rows');
    const data = { title: 'Builds', nav: 'builds', viewer: ctx.viewer(req), rows, filter: { status: status ?? '', repo: repo ?? '', ref: ref ?? '' }, statuses: BUILD_STATUSES, refreshUrl: `/builds?${search.toString()}` };
    return ctx.page(reply, 200, q.fragment === 'rows' ? 'build-rows' : 'builds', data);
  });

  route(app, ROUTES.uiBuild, {}, async (req, reply) => {
    const b = await ctx.builds.getBuild(req.params.id);
    const now = ctx.now();
    const [{ artifacts }, log, rows] = await Promise.all([ctx.artifacts.list(b.id), logWindow(ctx.store, b.id, b.logBytes, b.logBytes), rowsOf([b])]);
    return ctx.page(reply, 200, 'build', {
      title: `Build ${b.id}`,
      nav: 'builds',
      viewer: ctx.viewer(req),
      b,
      row: rows[0]!,
      failure: failureWords(b),
      stepDurations: stepDurationWords(b, now),
      now,
      artifacts,
      log,
      active: b.status === 'queued' || b.status === 'assigned' || b.status === 'preparing' || b.status === 'running',
      finished: b.status === 'succeeded' || b.status === 'failed' || b.status === 'cancelled',
      times: { created: timeWords(b.createdAt), started: timeWords(b.startedAt), finished: timeWords(b.finishedAt) },
    });
  });

  route(app, ROUTES.uiBuildLog, {}, async (req, reply) => {
    const b = await ctx.builds.getBuild(req.params.id);
    const log = await logWindow(ctx.store, b.id, b.logBytes, Number(req.query.before));
    // htmx asks for the fragment (prepended to the log); a browser without JS gets a page.
    const fragment = req.headers['hx-request'] === 'true';
    return ctx.page(reply, 200, fragment ? 'log-older' : 'log-page', { title: `Build ${b.id}: log`, nav: 'builds', viewer: ctx.viewer(req), b, log, windowKiB: TAIL_WINDOW_BYTES / 1024 });
  });

  route(app, ROUTES.uiWorkers, {}, async (req, reply) => {
    const loads = await ctx.workers.loads();
    const workers = loads.map((l) => ({
      id: l.worker.id,
      status: workerStatus(l.worker, l.runningBuilds),
      labels: l.worker.labels,
      lastSeen: timeWords(l.worker.lastSeenAt),
      runningBuilds: l.runningBuilds,
      drainRequested: l.worker.drainRequested,
    }));
    return ctx.page(reply, 200, 'workers', { title: 'Workers', nav: 'workers', viewer: ctx.viewer(req), workers });
  });

  route(app, ROUTES.uiQueue, {}, async (req, reply) => {
    // Newest first from the store; the queue reads oldest first (the order they are handed out).
    const queued = (await ctx.builds.listBuilds({ status: 'queued', limit: QUEUE_PAGE_SIZE })).reverse();
    return ctx.page(reply, 200, 'queue', { title: 'Queue', nav: 'queue', viewer: ctx.viewer(req), rows: await rowsOf(queued) });
  });

  route(app, ROUTES.uiProjects, {}, async (req, reply) => {
    const projects = (await ctx.projects.list()).map(projectView);
    return ctx.page(reply, 200, 'projects', { title: 'Projects', nav: 'projects', viewer: ctx.viewer(req), projects });
  });

  route(app, ROUTES.uiTokens, {}, async (req, reply) => {
    return ctx.page(reply, 200, 'tokens', await tokensPage(ctx, req.principal, null));
  });

  route(app, ROUTES.uiAudit, {}, async (req, reply) => {
    const list = await ctx.access.listAudit({
      limit: Number(req.query.limit ?? AUDIT_PAGE_SIZE),
      ...(req.query.before === undefined ? {} : { before: Number(req.query.before) }),
      ...(req.query.action === undefined ? {} : { action: req.query.action }),
    });
    return ctx.page(reply, 200, 'audit', { title: 'Audit', nav: 'audit', viewer: ctx.viewer(req), entries: list.entries, nextBefore: list.nextBefore });
  });
}

const blankToUndefined = (s: string | undefined): string | undefined => (s === undefined || s.trim() === '' ? undefined : s.trim());
