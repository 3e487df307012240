/**
 * The route table's answer columns hold: every route, called once as its client calls it,
 * answers its table status (`okStatus`) and, where the table gives an answer schema, a body that
 * schema accepts. The clients take their answer types from the same table (`AnswerOf`), so a
 * handler that drifts from it fails here, not in an agent or a CLI at run time.
 */
import { createHmac } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Value } from 'typebox/value';
import { pathOf, ROUTES, type RouteSpec } from '../../src/protocol/routes.ts';
import { AccessService } from '../../src/controller/access-service.ts';
import { startTestController, type TestController } from './support.ts';

type Name = keyof typeof ROUTES;
interface Call {
  params?: Record<string, string>;
  body?: unknown;
  headers: Record<string, string>;
  query?: Record<string, string>;
}

describe('the route table and the answers', () => {
  let c: TestController | undefined;
  afterEach(async () => {
    await c?.close();
    c = undefined;
  });

  it('every route answers its table status and a body its answer schema accepts', async () => {
    const githubSecret = 'route-answers-github-secret';
    c = await startTestController({ githubSecret });
    // The build the table's worker routes act on comes from GitHub (checkoutToken needs a source).
    const project = (await c.post(pathOf(ROUTES.createProject, {}), c.admin, { repo: 'octo/app' })).json().id as string;
    await c.service.submit(
      { steps: [{ name: 'build', run: 'true' }] },
      {
        projectId: project,
        repo: 'octo/app',
        name: 'ios',
        event: 'push',
        ref: 'refs/heads/main',
        sha: 'a'.repeat(40),
        prNumber: null,
        deliveryId: null,
        rerunOf: null,
        cloneUrl: 'https://github.com/octo/app.git',
        checkout: { submodules: false, lfs: false },
      },
    );
    const worker = await c.enrol('mac-1');
    const claim = (await c.poll('mac-1', worker.auth))!;
    // Left queued for the table's poll to claim (the oldest queued goes first), then cancelled.
    const second = await c.submit();
    const id = claim.build.id;
    // A token made beforehand, for the table's revoke.
    const token = await c.access.createToken({ kind: 'admin' }, { name: 'answers', role: 'viewer' });
    const lease = claim.lease;
    const octets = { 'content-type': 'application/octet-stream' };
    const push = JSON.stringify({ ref: 'refs/heads/main', repository: { full_name: 'octo/app' } });
    const github = {
      'content-type': 'application/json',
      'x-github-event': 'push',
      'x-github-delivery': '72d3162e-cc78-11e3-81ab-4c9367dc0958',
      'x-hub-signature-256': `sha256=${createHmac('sha256', githubSecret).update(push).digest('hex')}`,
    };

    // The dashboard's: a user to sign in, a token to revoke, an API build to cancel and rerun, a worker to drain and remove.
    const access = new AccessService({ store: c.store, now: Date.now });
    await access.createUser({ kind: 'admin' }, { name: 'route-answers-ui', role: 'operator', password: 'route-answers-password' });
    const uiToken = (await access.createToken({ kind: 'admin' }, { name: 'route-answers-ui', role: 'viewer' })).token.id;
    const third = await c.submit({ labels: ['nobody'] });
    await c.enrol('mac-3');
    const form = { ...c.admin, 'content-type': 'application/x-www-form-urlencoded' };

    // In the order a build's life calls them; each route once.
    const calls: [Name, Call][] = [
      ['health', { headers: {} }],
      ['metrics', { headers: {} }],
      ['createWorker', { headers: c.admin, body: { id: 'mac-2', labels: ['macos'] } }],
      ['listWorkers', { headers: c.admin }],
      ['submitBuild', { headers: c.admin, body: { steps: [{ name: 'build', run: 'true' }] } }],
      ['listBuilds', { headers: c.admin, query: { limit: '10' } }],
      ['getWorker', { headers: worker.auth, params: { id: 'mac-1' } }],
      ['poll', { headers: worker.auth, params: { id: 'mac-1' }, body: { slotsFree: 1, runningBuilds: [id] } }],
      ['workerHeartbeat', { headers: worker.auth, params: { id: 'mac-1' }, body: { runningBuilds: [id] } }],
      ['phase', { headers: worker.auth, params: { id }, body: { lease, phase: 'preparing' } }],
      ['buildHeartbeat', { headers: { authorization: `Bearer ${claim.buildToken}` }, params: { id }, body: { progress: 10 } }],
      ['checkoutToken', { headers: worker.auth, params: { id }, body: { lease } }],
      ['appendLog', { headers: worker.auth, params: { id }, body: { lease, offset: 0, data: 'hello\n' } }],
      ['readLog', { headers: c.admin, params: { id } }],
      ['uploadArtifact', { headers: { ...worker.auth, ...octets, 'x-expo-lease': lease }, params: { id, '*': 'out/App.ipa' }, body: Buffer.from('ipa') }],
      ['listArtifacts', { headers: c.admin, params: { id } }],
      ['downloadArtifact', { headers: c.admin, params: { id, '*': 'out/App.ipa' } }],
      ['complete', { headers: worker.auth, params: { id }, body: { lease, status: 'succeeded', exitCode: 0 } }],
      ['getBuild', { headers: c.admin, params: { id } }],
      // After `complete`: the stream of a final build sends its log and `end`, and the answer ends.
      ['streamLog', { headers: c.admin, params: { id } }],
      ['rerunBuild', { headers: c.admin, params: { id } }],
      ['cancelBuild', { headers: c.admin, params: { id: second.id }, body: {} }],
      ['prune', { headers: c.admin, body: { dryRun: true } }],
      ['githubWebhook', { headers: github, body: push }],
      ['listDeliveries', { headers: c.admin, query: { limit: '10' } }],
      ['createProject', { headers: c.admin, body: { repo: 'octo/other', pipelinePath: 'ci/pipeline.yml', supersede: false } }],
      ['listProjects', { headers: c.admin }],
      ['getProject', { headers: c.admin, params: { id: project } }],
      ['putProjectSecret', { headers: c.admin, params: { id: project, name: 'TOKEN' }, body: { value: 'a-secret-value' } }],
      ['deleteProjectSecret', { headers: c.admin, params: { id: project, name: 'TOKEN' } }],
      ['deleteProject', { headers: c.admin, params: { id: project } }],
      ['me', { headers: c.admin }],
      ['createUser', { headers: c.admin, body: { name: 'alice', role: 'operator' } }],
      ['listUsers', { headers: c.admin }],
      ['setUserPassword', { headers: c.admin, params: { name: 'alice' }, body: {} }],
      ['setUserRole', { headers: c.admin, params: { name: 'alice' }, body: { role: 'viewer' } }],
      ['revokeUserSessions', { headers: c.admin, params: { name: 'alice' } }],
      ['deleteUser', { headers: c.admin, params: { name: 'alice' } }],
      ['createToken', { headers: c.admin, body: { name: 'ci', role: 'operator', expiresInDays: 7 } }],
      ['listTokens', { headers: c.admin }],
      ['revokeToken', { headers: c.admin, params: { id: token.token.id } }],
      ['listAudit', { headers: c.admin, query: { limit: '5' } }],
      ['drainWorker', { headers: c.admin, params: { id: 'mac-1' } }],
      ['resumeWorker', { headers: c.admin, params: { id: 'mac-1' }, body: {} }],
      ['deleteWorker', { headers: c.admin, params: { id: 'mac-2' } }],
      ['uiAsset', { headers: {}, params: { file: 'app.css' } }],
      ['uiSignInPage', { headers: {}, query: { next: '/builds' } }],
      ['uiSignIn', { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'name=route-answers-ui&password=route-answers-password' }],
      ['uiOverview', { headers: c.admin }],
      ['uiBuilds', { headers: c.admin, query: { status: 'queued' } }],
      ['uiBuild', { headers: c.admin, params: { id } }],
      ['uiBuildLog', { headers: c.admin, params: { id }, query: { before: '6' } }],
      ['uiCancelBuild', { headers: form, params: { id: third.id }, body: '_csrf=' }],
      ['uiRerunBuild', { headers: form, params: { id: third.id }, body: '_csrf=' }],
      ['uiWorkers', { headers: c.admin }],
      ['uiDrainWorker', { headers: form, params: { id: 'mac-3' }, body: '_csrf=' }],
      ['uiResumeWorker', { headers: form, params: { id: 'mac-3' }, body: '_csrf=' }],
      ['uiRemoveWorker', { headers: form, params: { id: 'mac-3' }, body: '_csrf=' }],
      ['uiQueue', { headers: c.admin }],
      ['uiProjects', { headers: c.admin }],
      ['uiTokens', { headers: c.admin }],
      ['uiCreateToken', { headers: form, body: '_csrf=&name=ci&role=viewer&expiresInDays=7' }],
      ['uiRevokeToken', { headers: form, params: { id: uiToken }, body: '_csrf=' }],
      ['uiAudit', { headers: c.admin, query: { limit: '10' } }],
      ['uiSignOut', { headers: form, body: '_csrf=' }],
    ];
    expect(calls.map(([name]) => name).sort()).toEqual(Object.keys(ROUTES).sort());

    for (const [name, call] of calls) {
      const spec: RouteSpec = ROUTES[name];
      const res = await c.app.inject({
        method: spec.method,
        url: pathOf(spec as never, (call.params ?? {}) as never, call.query),
        headers: call.headers,
        ...(call.body === undefined ? {} : { payload: call.body as object }),
      });
      expect({ name, status: res.statusCode }, res.body.slice(0, 300)).toEqual({ name, status: spec.okStatus });
      if (spec.answer !== undefined) {
        const body: unknown = res.json();
        const errors = [...Value.Errors(spec.answer, body)].map((e) => `${e.instancePath} ${e.message}`);
        expect({ name, errors }).toEqual({ name, errors: [] });
      }
    }
  });
});
