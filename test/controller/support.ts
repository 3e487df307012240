/**
 * Helpers for controller tests: an app on a real SQLite database in a temp dir (driven with
 * `app.inject`), a controllable clock, and short-hands for the calls every test makes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { buildApp, type AppOptions, type ControllerApp } from '../../src/controller/app.ts';
import { SqliteStore } from '../../src/controller/store/sqlite-store.ts';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';

export const ADMIN_KEY = 'test-admin-key-0123456789';

export interface TestController extends ControllerApp {
  store: SqliteStore;
  dir: string;
  clock: { now: number };
  close: () => Promise<void>;
  /** Stops the app and closes the store, keeping the data directory (to start another on it). */
  stop: () => Promise<void>;
  admin: { authorization: string };
  enrol: (id: string, labels?: string[]) => Promise<{ id: string; apiKey: string; auth: { authorization: string } }>;
  submit: (body?: Record<string, unknown>) => Promise<{ id: string; status: string }>;
  poll: (workerId: string, key: { authorization: string }, body?: Record<string, unknown>) => Promise<PollClaim | null>;
  get: (id: string) => Promise<Record<string, unknown>>;
  post: (url: string, headers: Record<string, string>, body?: unknown) => Promise<{ statusCode: number; json: () => Record<string, unknown> }>;
}

export interface PollClaim {
  build: { id: string; attempt: number; env: Record<string, string>; logOffset: number };
  lease: string;
  buildToken: string;
}

export const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

export async function startTestController(
  opts: {
    heartbeatTimeoutMs?: number;
    prepareTimeoutMs?: number;
    maxLogBytes?: number;
    maxArtifactBytes?: number;
    realClock?: boolean;
    claimGraceMs?: number;
    /** The GitHub webhook secret; none by default (the webhook route refuses every delivery). */
    githubSecret?: string;
    /** How long a webhook body may take to arrive (ms); the controller's default (30 s) otherwise. */
    webhookArrivalMs?: number;
    /** Where the controller logs; silent by default. */
    logger?: pino.Logger;
    /** GitHub's API, where it is cloned from, the public URL, and the GitHub work's timings. */
    github?: AppOptions['github'];
    githubWebUrl?: string;
    publicUrl?: string;
    /** Whose X-Forwarded-* headers the controller believes (`--trust-proxy`); none by default. */
    trustProxy?: AppOptions['trustProxy'];
    githubTuning?: AppOptions['githubTuning'];
    /** Open this data directory's database instead of a new one (a restart). */
    dir?: string;
    /** scrypt's cost for users' passwords, log2 N; 12 by default here (the controller's 17 would slow every test). */
    passwordCostLog2?: number;
    /** How long a dashboard session lasts, ms; the controller's default otherwise. */
    sessionTtlMs?: number;
    /** Live log streams' bound and timings (shrunk by their tests). */
    logStreams?: AppOptions['logStreams'];
  } = {},
): Promise<TestController> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'expo-ctl-test-'));
  const store = new SqliteStore({ path: join(dir, 'controller.db') });
  await store.migrate();
  const clock = { now: Date.now() };
  const now = opts.realClock ? Date.now : () => clock.now;
  const controller = await buildApp({
    store,
    adminKey: ADMIN_KEY,
    heartbeatTimeoutMs: opts.heartbeatTimeoutMs ?? 120_000,
    maxLogBytes: opts.maxLogBytes ?? 1024 * 1024,
    artifactsDir: join(dir, 'artifacts'),
    maxArtifactBytes: opts.maxArtifactBytes,
    defaultBuildTimeoutS: 3600,
    prepareTimeoutMs: opts.prepareTimeoutMs,
    logger: opts.logger ?? pino({ level: 'silent' }),
    now,
    startedAt: now(),
    claimGraceMs: opts.claimGraceMs,
    githubSecret: opts.githubSecret,
    webhookArrivalMs: opts.webhookArrivalMs,
    github: opts.github,
    githubWebUrl: opts.githubWebUrl,
    publicUrl: opts.publicUrl,
    trustProxy: opts.trustProxy,
    githubTuning: opts.githubTuning,
    passwordCostLog2: opts.passwordCostLog2 ?? 12,
    sessionTtlMs: opts.sessionTtlMs,
    logStreams: opts.logStreams,
  });
  // The GitHub work runs on the leader; these tests drive the watchdog's sweeps themselves, so
  // rather than `startCluster` (which starts the watchdog) only those two start, as a leader's would.
  controller.webhooks.start();
  controller.reporter.start();
  const admin = bearer(ADMIN_KEY);
  const post: TestController['post'] = async (url, headers, body) => {
    const res = await controller.app.inject({ method: 'POST', url, headers, ...(body === undefined ? {} : { payload: body as object }) });
    return { statusCode: res.statusCode, json: () => res.json() as Record<string, unknown> };
  };
  return {
    ...controller,
    store,
    dir,
    clock,
    admin,
    post,
    close: async () => {
      await controller.shutdown();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
    stop: async () => {
      await controller.shutdown();
      await store.close();
    },
    enrol: async (id, labels) => {
      const res = await post(pathOf(ROUTES.createWorker, {}), admin, { id, ...(labels ? { labels } : {}) });
      if (res.statusCode !== 201) throw new Error(`enrol ${id}: ${res.statusCode} ${JSON.stringify(res.json())}`);
      const { apiKey } = res.json() as { apiKey: string };
      return { id, apiKey, auth: bearer(apiKey) };
    },
    submit: async (body = {}) => {
      const res = await post(pathOf(ROUTES.submitBuild, {}), admin, { steps: [{ name: 'build', run: 'echo hello' }], ...body });
      if (res.statusCode !== 201) throw new Error(`submit: ${res.statusCode} ${JSON.stringify(res.json())}`);
      return res.json() as { id: string; status: string };
    },
    poll: async (workerId, key, body = {}) => {
      const res = await post(pathOf(ROUTES.poll, { id: workerId }), key, { slotsFree: 1, runningBuilds: [], waitS: 0, ...body });
      if (res.statusCode === 204) return null;
      if (res.statusCode !== 200) throw new Error(`poll: ${res.statusCode} ${JSON.stringify(res.json())}`);
      return res.json() as unknown as PollClaim;
    },
    get: async (id) => {
      const res = await controller.app.inject({ method: ROUTES.getBuild.method, url: pathOf(ROUTES.getBuild, { id }), headers: admin });
      return res.json() as Record<string, unknown>;
    },
  };
}
