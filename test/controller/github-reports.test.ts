/**
 * A build from GitHub followed on GitHub while it runs, on a real app and a real SQLite
 * database, with GitHub's API played by the stand-in (a real HTTP server whose every route and
 * answer is checked against GitHub's OpenAPI description): a push delivery makes a build, a
 * worker claims it, starts it, logs a line holding the project's secret, and ends it. With a
 * GitHub App, its check run goes `queued` → `in_progress` → `completed` with the masked log
 * tail; with a token, its commit status goes pending "queued" → pending "running on mac-1" →
 * its result.
 *
 * The reporter's sweep is set far beyond the waits, so every report here is driven by a build
 * event (submitted, started, finished) alone.
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { GithubApi } from '../../src/github/api.ts';
import { createGithubApi } from '../../src/github/client.ts';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import { GithubStandin, type RecordedRequest } from '../support/github-standin.ts';
import { example, sendSigned, until as waitFor } from '../support/github-deliveries.ts';
import { startTestController, type TestController } from './support.ts';


const SECRET = 'webhook-test-secret-0123456789';
const TOKEN = 'ghp_standin_token_0123456789abcdef';
const APP_ID = '4242';
const REPO = 'octo/app';
const WEB = 'https://github.example';
const PUBLIC_URL = 'https://builds.example.com';
const SHA = 'c'.repeat(40);
const APPLE_KEY = 'apple-api-key-value-0123456789';
/** Generous: each report is a few local HTTP calls after an answer, on a busy machine. */
const WAIT_MS = 30_000;
/** Far beyond WAIT_MS: no sweep runs during a test, so only build events trigger reports. */
const SWEEP_MS = 10 * WAIT_MS;

const PIPELINE = `builds:
  ios:
    labels: [macos]
    secrets: [APPLE_API_KEY]
    steps:
      - {name: build, run: echo building}
`;

let c: TestController | undefined;
let gh: GithubStandin | undefined;
afterEach(async () => {
  await c?.close();
  await gh?.stop();
  c = undefined;
  gh = undefined;
});

function pushPayload(): Record<string, unknown> {
  const p = example('push', (e) => e.ref === 'refs/heads/master' && e.deleted === false);
  p.ref = 'refs/heads/main';
  p.after = SHA;
  const repo = p.repository as Record<string, unknown>;
  repo.full_name = REPO;
  repo.clone_url = `${WEB}/${REPO}.git`;
  return p;
}

/** A controller on the stand-in with `api`, a project for REPO with its secret, and the pipeline file at SHA. */
async function start(standin: GithubStandin, api: GithubApi): Promise<TestController> {
  gh = standin;
  c = await startTestController({ realClock: true, githubSecret: SECRET, github: api, githubWebUrl: WEB, publicUrl: PUBLIC_URL, githubTuning: { reportSweepMs: SWEEP_MS } });
  const project = await c.post(pathOf(ROUTES.createProject, {}), c.admin, { repo: REPO });
  expect(project.statusCode, JSON.stringify(project.json())).toBe(201);
  const projectId = project.json().id as string;
  const secret = await c.app.inject({ method: 'PUT', url: pathOf(ROUTES.putProjectSecret, { id: projectId, name: 'APPLE_API_KEY' }), headers: c.admin, payload: { value: APPLE_KEY } });
  expect(secret.statusCode, secret.body).toBe(200);
  standin.addFile(REPO, SHA, '.expo-worker.yml', PIPELINE);
  return c;
}

/** Sends a signed push delivery for SHA and returns the one build it made. */
async function push(ctl: TestController): Promise<string> {
  const res = await sendSigned(ctl.app, SECRET, 'push', pushPayload(), '00000000-0000-4000-8000-000000000001');
  expect(res.statusCode, res.body).toBe(202);
  await ctl.webhooks.idle();
  const list = await ctl.app.inject({ method: 'GET', url: pathOf(ROUTES.listBuilds, {}, { sha: SHA }), headers: ctl.admin });
  const builds = (list.json() as { builds: { id: string }[] }).builds;
  expect(builds).toHaveLength(1);
  return builds[0]!.id;
}

/** Waits until `cond` holds (the reporter works after the answers), failing with what was seen. */
const until = <T>(what: string, read: () => T, cond: (v: T) => boolean): Promise<T> => waitFor(what, read, cond, WAIT_MS, 25);

/** A worker's side of a build: enrol, claim, phases, a log chunk, the end. */
async function work(ctl: TestController, buildId: string) {
  const w = await ctl.enrol('mac-1', ['macos']);
  const claim = await ctl.poll('mac-1', w.auth);
  expect(claim?.build.id).toBe(buildId);
  const lease = claim!.lease;
  const call = async (route: 'phase' | 'logs' | 'complete', body: Record<string, unknown>) => {
    const res = await ctl.post(`/api/v1/builds/${buildId}/${route}`, w.auth, { lease, ...body });
    expect(res.statusCode, JSON.stringify(res.json())).toBe(200);
  };
  return {
    phase: (phase: 'preparing' | 'running') => call('phase', { phase }),
    log: (data: string) => call('logs', { offset: 0, data }),
    complete: (body: Record<string, unknown>) => call('complete', body),
  };
}

const checkRunCalls = (): RecordedRequest[] => gh!.requests.filter((r) => r.path.includes('/check-runs'));
const bodyOf = (r: RecordedRequest) => r.body as Record<string, any>;

describe('GitHub follows a build while it runs', () => {
  it('with a GitHub App: the check run is created queued, moved to in_progress, then completed with the masked log tail', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const standin = await GithubStandin.start({ app: { appId: APP_ID, publicKey, installations: { 1: [REPO] } } });
    const ctl = await start(standin, createGithubApi({ githubApiUrl: standin.url, githubToken: null, githubAppId: APP_ID, githubPrivateKey: pem }, { retries: 0 }));
    const id = await push(ctl);
    const link = `${PUBLIC_URL}/builds/${id}`;

    await until('the check run created', checkRunCalls, (calls) => calls.length >= 1);
    const worker = await work(ctl, id);
    await worker.phase('preparing');
    await worker.phase('running');
    await until('the check run in progress', checkRunCalls, (calls) => calls.length >= 2);
    await worker.phase('running'); // a repeat: no new report
    await worker.log(`\u001b[1m$ npx eas build\u001b[0m\nsigning with ${APPLE_KEY}\n\u001b[31merror:\u001b[0m the build failed\n`);
    await worker.complete({ status: 'failed', exitCode: 2, failureReason: 'build_failed', message: 'step "build" exited 2' });
    const calls = await until('the check run completed', checkRunCalls, (cs) => cs.some((r) => bodyOf(r).status === 'completed'));

    expect(calls.map((r) => [r.method, r.path, r.auth, bodyOf(r).status, bodyOf(r).conclusion])).toEqual([
      ['POST', `/repos/${REPO}/check-runs`, 'installation', 'queued', undefined],
      ['PATCH', expect.stringMatching(new RegExp(`^/repos/${REPO}/check-runs/\\d+$`)), 'installation', 'in_progress', undefined],
      ['PATCH', calls[1]!.path, 'installation', 'completed', 'failure'],
    ]);
    const [created, started, completed] = calls.map(bodyOf);
    expect(created).toMatchObject({ name: 'expo-worker/ios', head_sha: SHA, external_id: id, details_url: link, output: { title: 'Queued' } });
    expect(started).toMatchObject({ details_url: link, output: { title: 'Running on mac-1' } });
    expect(completed).toMatchObject({ details_url: link, output: { title: 'Failed: a step failed (exit 2)' } });
    const text = completed!.output.text as string;
    expect(text).toContain('$ npx eas build\nsigning with ');
    expect(text).toContain('error: the build failed\n```');
    expect(text).not.toContain('\u001b');
    expect(completed!.output.summary).toContain(`[${id}](${link})`);
    // The secret reached the worker, never GitHub.
    expect(JSON.stringify(gh!.requests)).not.toContain(APPLE_KEY);
    expect([...gh!.checkRuns.values()]).toHaveLength(1);
    expect(gh!.mismatches).toEqual([]);
    expect((await ctl.store.getBuild(id))?.reported).toBe('final');
  });

  it('with a token: pending "queued", pending "running on mac-1", then success, each linking to the build', async () => {
    const standin = await GithubStandin.start({ token: TOKEN });
    const ctl = await start(standin, createGithubApi({ githubApiUrl: standin.url, githubToken: TOKEN, githubAppId: null, githubPrivateKey: null }, { retries: 0 }));
    const id = await push(ctl);
    const statuses = () => gh!.statuses.filter((s) => s.sha === SHA).map((s) => s.body);

    await until('the pending status', statuses, (s) => s.length >= 1);
    // The reporter is told when the build starts: once, by the phase update that moves it to running.
    let notified = 0;
    const notify = ctl.reporter.notify.bind(ctl.reporter);
    ctl.reporter.notify = () => {
      notified++;
      notify();
    };
    const worker = await work(ctl, id);
    const claimed = notified;
    await worker.phase('preparing');
    expect(notified).toBe(claimed);
    await worker.phase('running');
    expect(notified).toBe(claimed + 1);
    await worker.phase('running');
    expect(notified).toBe(claimed + 1);
    await until('the running status', statuses, (s) => s.length >= 2);
    await worker.log(`signing with ${APPLE_KEY}\n`);
    await worker.complete({ status: 'succeeded', exitCode: 0 });
    const all = await until('the final status', statuses, (s) => s.length >= 3);

    expect(all.map((s) => [s.state, s.context, s.description, s.target_url])).toEqual([
      ['pending', 'expo-worker/ios', 'queued', `${PUBLIC_URL}/builds/${id}`],
      ['pending', 'expo-worker/ios', 'running on mac-1', `${PUBLIC_URL}/builds/${id}`],
      ['success', 'expo-worker/ios', expect.stringMatching(/^succeeded in \d+s$/), `${PUBLIC_URL}/builds/${id}`],
    ]);
    expect(JSON.stringify(gh!.requests)).not.toContain(APPLE_KEY);
    expect(gh!.mismatches).toEqual([]);
  });
});
