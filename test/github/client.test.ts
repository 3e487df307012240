/**
 * The GitHub client against the stand-in (a real HTTP server checked against GitHub's OpenAPI
 * description): files, statuses, check runs, App authentication with repository-scoped tokens,
 * retries, rate limits, refusals — and no credential in any error or log line.
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isExpoError, type ExpoError } from '../../src/protocol/errors.ts';
import { appJwt } from '../../src/github/app-auth.ts';
import { createGithubApi, GithubClient, type GithubClientOptions } from '../../src/github/client.ts';
import { GithubStandin } from '../support/github-standin.ts';

const TOKEN = 'ghp_clientTestToken0123456789abcdef';
const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const PEM = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
let gh: GithubStandin;
const logs: string[] = [];
const errors: unknown[] = [];

beforeAll(async () => {
  gh = await GithubStandin.start({ token: TOKEN, app: { appId: '42', publicKey, installations: { 7: ['acme/app', 'acme/lib'] } }, publicRepos: ['acme/open'] });
  gh.addFile('acme/app', 'c0ffee', '.expo-worker.yml', 'builds:\n  ios: {}\n');
  gh.addFile('acme/app', 'c0ffee', 'dir with space/ü.yml', 'odd: true\n');
  gh.addFile('acme/open', 'c0ffee', '.expo-worker.yml', 'open: true\n');
  gh.addFile('acme/app', 'c0ffee', 'big.bin', 'x'.repeat(5000));
});
afterEach(() => {
  // Cleared as it is read, so one test's mismatch fails that test only.
  expect(gh.mismatches.splice(0)).toEqual([]);
  gh.requests.length = 0;
  gh.tokenLifetimeMs = 60 * 60_000;
  gh.chunkedRaw = false;
});
afterAll(async () => {
  await gh?.stop();
});

const tuning: GithubClientOptions = { retryMinMs: 10, retryMaxMs: 50, requestTimeoutMs: 10_000, maxRateLimitWaitMs: 5_000, logger: { warn: (obj, msg) => logs.push(`${JSON.stringify(obj)} ${msg}`) } };
const withToken = (o: GithubClientOptions = {}) => new GithubClient({ apiUrl: gh.url, token: TOKEN, ...tuning, ...o });
const withApp = (o: GithubClientOptions = {}) => createGithubApi({ githubApiUrl: gh.url, githubToken: null, githubAppId: '42', githubPrivateKey: PEM }, { ...tuning, ...o });
async function failure(p: Promise<unknown>): Promise<ExpoError> {
  try {
    await p;
  } catch (err) {
    errors.push(err);
    if (isExpoError(err)) return err;
    throw err;
  }
  throw new Error('expected a failure');
}

describe('getFile', () => {
  it('reads a file raw at a commit, each path segment encoded', async () => {
    const api = withToken();
    expect(await api.getFile('acme/app', '.expo-worker.yml', 'c0ffee', 1024)).toBe('builds:\n  ios: {}\n');
    expect(await api.getFile('acme/app', 'dir with space/ü.yml', 'c0ffee', 1024)).toBe('odd: true\n');
    expect(gh.requests[0]).toMatchObject({ method: 'GET', path: '/repos/acme/app/contents/.expo-worker.yml', query: { ref: 'c0ffee' }, accept: 'application/vnd.github.raw+json', auth: 'token' });
    expect(gh.requests[1]!.path).toBe('/repos/acme/app/contents/dir%20with%20space/%C3%BC.yml');
  });

  it('answers null for a file or commit that is not there', async () => {
    const api = withToken();
    expect(await api.getFile('acme/app', 'nope.yml', 'c0ffee', 1024)).toBeNull();
    expect(await api.getFile('acme/app', '.expo-worker.yml', 'deadbeef', 1024)).toBeNull();
    // A directory is no file, though GitHub answers 200 with its listing.
    expect(await api.getFile('acme/app', 'dir with space', 'c0ffee', 1024)).toBeNull();
    expect(gh.requests.at(-1)!.path).toBe('/repos/acme/app/contents/dir%20with%20space');
  });

  it('refuses a file larger than asked for', async () => {
    const err = await failure(withToken().getFile('acme/app', 'big.bin', 'c0ffee', 4096));
    expect(err).toMatchObject({ code: 'GITHUB_STATUS', details: { tooLarge: true } });
  });

  it('refuses a file larger than asked for when GitHub does not say its size up front', async () => {
    gh.chunkedRaw = true;
    expect(await failure(withToken().getFile('acme/app', 'big.bin', 'c0ffee', 4096))).toMatchObject({ code: 'GITHUB_STATUS', details: { tooLarge: true } });
    expect(await withToken().getFile('acme/app', 'big.bin', 'c0ffee', 5000)).toHaveLength(5000);
  });

  it('refuses a bad repository name or path before any request', async () => {
    expect(await failure(withToken().getFile('acme/../x', 'a', 'c0ffee', 10))).toMatchObject({ code: 'GITHUB_STATUS', details: { invalid: true } });
    expect(await failure(withToken().getFile('acme/app', '../etc/passwd', 'c0ffee', 10))).toMatchObject({ code: 'GITHUB_STATUS' });
    expect(gh.requests).toEqual([]);
  });

  it('reads a public repository without credentials', async () => {
    const api = new GithubClient({ apiUrl: gh.url, ...tuning });
    expect(api.mode).toBe('none');
    expect(await api.getFile('acme/open', '.expo-worker.yml', 'c0ffee', 1024)).toBe('open: true\n');
    expect(gh.requests[0]!.auth).toBe('none');
    expect(await api.cloneToken('acme/open')).toEqual({ token: null, expiresAt: null });
    expect(await failure(api.createStatus('acme/open', 'c0ffee', { state: 'pending', context: 'expo-worker/ios', description: 'queued', targetUrl: null }))).toMatchObject({ code: 'GITHUB_STATUS' });
  });
});

describe('with a token', () => {
  it('posts a commit status, its description cut to 140 characters', async () => {
    const api = withToken();
    expect(api.mode).toBe('token');
    await api.createStatus('acme/app', 'c0ffee', { state: 'failure', context: 'expo-worker/ios', description: 'é'.repeat(200), targetUrl: 'https://ci.example.com/builds/b1' });
    const posted = gh.statuses.at(-1)!;
    expect(posted.body).toMatchObject({ state: 'failure', context: 'expo-worker/ios', target_url: 'https://ci.example.com/builds/b1' });
    expect(Array.from(posted.body.description as string)).toHaveLength(140);
    expect(posted.body.description).toMatch(/…$/);
  });

  it('hands out the configured token for cloning, and refuses check runs (GitHub wants an App)', async () => {
    const api = withToken();
    expect(await api.cloneToken('acme/app')).toEqual({ token: TOKEN, expiresAt: null });
    expect(await failure(api.createCheckRun('acme/app', { name: 'x', headSha: 'c0ffee', status: 'queued', externalId: 'b1', detailsUrl: null }))).toMatchObject({ code: 'GITHUB_STATUS' });
    expect(gh.requests).toEqual([]);
  });

  it('retries 5xx and succeeds; gives up as GITHUB_UNREACHABLE after its retries', async () => {
    gh.failNext(2);
    await withToken().createStatus('acme/app', 'c0ffee', { state: 'pending', context: 'expo-worker/ios', description: 'queued', targetUrl: null });
    expect(gh.requests).toHaveLength(3);
    gh.requests.length = 0;
    gh.failNext(3, 502);
    expect(await failure(withToken({ retries: 2 }).createStatus('acme/app', 'c0ffee', { state: 'pending', context: 'c', description: 'd', targetUrl: null }))).toMatchObject({ code: 'GITHUB_UNREACHABLE', details: { status: 502 } });
    expect(gh.requests).toHaveLength(3);
  });

  it('answers a refusal (401, 422) as GITHUB_STATUS at once, without retrying', async () => {
    const wrong = new GithubClient({ apiUrl: gh.url, token: 'ghp_notTheRightOne', ...tuning });
    expect(await failure(wrong.createStatus('acme/app', 'c0ffee', { state: 'pending', context: 'c', description: 'd', targetUrl: null }))).toMatchObject({ code: 'GITHUB_STATUS', details: { status: 401 } });
    gh.failNext(1, 422);
    expect(await failure(withToken().createStatus('acme/app', 'c0ffee', { state: 'pending', context: 'c', description: 'd', targetUrl: null }))).toMatchObject({ code: 'GITHUB_STATUS', details: { status: 422 } });
    expect(gh.requests).toHaveLength(2);
  });

  it('fails a rate limit longer than its budget at once, with retryAfterMs', async () => {
    gh.tooManyNext(3600);
    const err = await failure(withToken().getFile('acme/app', '.expo-worker.yml', 'c0ffee', 1024));
    expect(err).toMatchObject({ code: 'GITHUB_UNREACHABLE', details: { retryAfterMs: 3_600_000 } });
    gh.rateLimitNext(3600);
    const err2 = await failure(withToken().getFile('acme/app', '.expo-worker.yml', 'c0ffee', 1024));
    expect(err2.code).toBe('GITHUB_UNREACHABLE');
    expect((err2.details as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(3_500_000);
    expect(gh.requests).toHaveLength(2);
  });

  it('sleeps through a short rate limit', async () => {
    gh.tooManyNext(1);
    gh.rateLimitNext(1);
    expect(await withToken().getFile('acme/app', '.expo-worker.yml', 'c0ffee', 1024)).toBe('builds:\n  ios: {}\n');
    expect(gh.requests).toHaveLength(3);
  });

  it('bounds a call that gets no answer by its timeout, then retries it', async () => {
    gh.hangNext();
    expect(await withToken({ requestTimeoutMs: 300 }).getFile('acme/app', '.expo-worker.yml', 'c0ffee', 1024)).toContain('ios');
    expect(gh.requests).toHaveLength(2);
    gh.hangNext();
    expect(await failure(withToken({ requestTimeoutMs: 300, retries: 0 }).getFile('acme/app', '.expo-worker.yml', 'c0ffee', 1024))).toMatchObject({ code: 'GITHUB_UNREACHABLE' });
  });

  it('fails an unreachable API as GITHUB_UNREACHABLE', async () => {
    const down = new GithubClient({ apiUrl: 'http://127.0.0.1:1', token: TOKEN, ...tuning, retries: 1 });
    expect(await failure(down.getFile('acme/app', 'a.yml', 'c0ffee', 10))).toMatchObject({ code: 'GITHUB_UNREACHABLE' });
  });
});

describe('as a GitHub App', () => {
  it('looks up the installation with a JWT and reports with one repository-scoped token, reused', async () => {
    const api = withApp();
    expect(api.mode).toBe('app');
    const id = await api.createCheckRun('acme/app', { name: 'expo-worker/ios', headSha: 'c0ffee', status: 'in_progress', externalId: 'b1', detailsUrl: 'https://ci.example.com/builds/b1' });
    await api.updateCheckRun('acme/app', id, { status: 'completed', conclusion: 'failure', output: { title: 't'.repeat(300), summary: `${'head '.repeat(20_000)}the tail` } });
    await api.createStatus('acme/app', 'c0ffee', { state: 'success', context: 'expo-worker/ios', description: 'ok', targetUrl: null });
    expect(await api.getFile('acme/app', '.expo-worker.yml', 'c0ffee', 1024)).toContain('ios');
    expect(gh.requests.map((r) => `${r.method} ${r.path} ${r.auth}`)).toEqual([
      'GET /repos/acme/app/installation app-jwt',
      'POST /app/installations/7/access_tokens app-jwt',
      'POST /repos/acme/app/check-runs installation',
      `PATCH /repos/acme/app/check-runs/${id} installation`,
      'POST /repos/acme/app/statuses/c0ffee installation',
      'GET /repos/acme/app/contents/.expo-worker.yml installation',
    ]);
    expect(gh.requests[1]!.body).toEqual({ repositories: ['app'], permissions: { statuses: 'write', checks: 'write', contents: 'read' } });
    const run = gh.checkRuns.get(id)!.body;
    expect(run).toMatchObject({ name: 'expo-worker/ios', head_sha: 'c0ffee', external_id: 'b1', details_url: 'https://ci.example.com/builds/b1', status: 'completed', conclusion: 'failure' });
    const output = run.output as { title: string; summary: string };
    expect(output.title).toHaveLength(255);
    expect(output.summary).toHaveLength(65_535);
    expect(output.summary).toMatch(/^….*the tail$/s);
  });

  it('buys a new token when the cached one is within 5 minutes of expiring', async () => {
    gh.tokenLifetimeMs = 4 * 60_000;
    const api = withApp();
    await api.createStatus('acme/lib', 'c0ffee', { state: 'pending', context: 'c', description: 'd', targetUrl: null });
    await api.createStatus('acme/lib', 'c0ffee', { state: 'success', context: 'c', description: 'd', targetUrl: null });
    const paths = gh.requests.map((r) => r.path);
    expect(paths.filter((p) => p.endsWith('/installation'))).toHaveLength(1);
    expect(paths.filter((p) => p.endsWith('/access_tokens'))).toHaveLength(2);
    const [first, second] = gh.requests.filter((r) => r.path.endsWith('/statuses/c0ffee'));
    expect(first!.auth).toBe('installation');
    expect(second!.auth).toBe('installation');
  });

  it('buys one token for concurrent calls, and a new one after GitHub refuses the cached one', async () => {
    const api = withApp();
    const status = { state: 'pending', context: 'c', description: 'd', targetUrl: null } as const;
    await Promise.all([api.createStatus('acme/app', 'c0ffee', status), api.createStatus('acme/app', 'c0ffee', status), api.getFile('acme/app', '.expo-worker.yml', 'c0ffee', 1024)]);
    expect(gh.requests.filter((r) => r.path.endsWith('/access_tokens'))).toHaveLength(1);
    gh.revokeTokens();
    expect(await failure(api.createStatus('acme/app', 'c0ffee', status))).toMatchObject({ code: 'GITHUB_STATUS', details: { status: 401 } });
    await api.createStatus('acme/app', 'c0ffee', status);
    expect(gh.requests.filter((r) => r.path.endsWith('/access_tokens'))).toHaveLength(2);
    expect(gh.requests.at(-1)!.auth).toBe('installation');
  });

  it('signs a JWT that GitHub accepts: RS256, issued 60 s back, at most 10 minutes long', () => {
    const now = Date.UTC(2026, 0, 1, 12, 0, 0);
    const [header, payload] = appJwt('42', privateKey, now).split('.').slice(0, 2).map((p) => JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>);
    expect(header).toEqual({ alg: 'RS256', typ: 'JWT' });
    expect(payload).toEqual({ iss: 42, iat: now / 1000 - 60, exp: expect.any(Number) as number });
    expect((payload!.exp as number) - (payload!.iat as number)).toBeLessThanOrEqual(600);
    expect(payload!.exp as number).toBeGreaterThan(now / 1000);
  });

  it('gives a fresh clone token per call that can read contents and nothing else', async () => {
    const api = withApp();
    const a = await api.cloneToken('acme/app');
    const b = await api.cloneToken('acme/app');
    expect(a.token).not.toBe(b.token);
    expect(a.expiresAt).toBeGreaterThan(Date.now());
    const mints = gh.requests.filter((r) => r.path.endsWith('/access_tokens'));
    expect(mints.map((r) => r.body)).toEqual([
      { repositories: ['app'], permissions: { contents: 'read' } },
      { repositories: ['app'], permissions: { contents: 'read' } },
    ]);
    // The stand-in honours the scope: the clone token reads, cannot post a status, and sees no other repository.
    const asClone = new GithubClient({ apiUrl: gh.url, token: a.token, ...tuning });
    expect(await asClone.getFile('acme/app', '.expo-worker.yml', 'c0ffee', 1024)).toContain('ios');
    expect(await failure(asClone.createStatus('acme/app', 'c0ffee', { state: 'pending', context: 'c', description: 'd', targetUrl: null }))).toMatchObject({ code: 'GITHUB_STATUS', details: { status: 403 } });
    expect(await asClone.getFile('acme/lib', '.expo-worker.yml', 'c0ffee', 1024)).toBeNull();
  });

  it('refuses a repository the App is not installed on as GITHUB_STATUS 404', async () => {
    expect(await failure(withApp().cloneToken('acme/elsewhere'))).toMatchObject({ code: 'GITHUB_STATUS', details: { status: 404 } });
  });

  it('answers an expired installation token with 401 (the stand-in honours expiry)', async () => {
    gh.tokenLifetimeMs = -1000;
    const expired = await withApp().cloneToken('acme/app');
    const asExpired = new GithubClient({ apiUrl: gh.url, token: expired.token, ...tuning });
    expect(await failure(asExpired.getFile('acme/app', '.expo-worker.yml', 'c0ffee', 1024))).toMatchObject({ code: 'GITHUB_STATUS', details: { status: 401 } });
  });
});

// Last in the file: it reads what every test above said.
describe('credentials', () => {
  it('appear in no error and no log line of any call above', () => {
    const secrets = [TOKEN, ...gh.mintedTokens()];
    const said = [...logs, ...errors.map((e) => `${(e as Error).message} ${(e as Error).stack ?? ''} ${JSON.stringify((e as ExpoError).details)}`)].join('\n');
    expect(errors.length).toBeGreaterThan(10);
    expect(logs.length).toBeGreaterThan(3);
    for (const secret of secrets) expect(said).not.toContain(secret);
  });
});
