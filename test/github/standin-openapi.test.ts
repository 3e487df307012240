/**
 * The GitHub stand-in is only as good as its likeness to GitHub: every route it serves is one
 * of GitHub's (by its OpenAPI description), its answers fit that description, and the check
 * that keeps them so can fail.
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { appJwt } from '../../src/github/app-auth.ts';
import { checkRequest, checkResponse, fromOpenApi, operation } from '../support/github-openapi.ts';
import { GithubStandin, STANDIN_ROUTES } from '../support/github-standin.ts';

const TOKEN = 'ghp_standinTestToken0123456789';
const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
let gh: GithubStandin;

beforeAll(async () => {
  gh = await GithubStandin.start({ token: TOKEN, app: { appId: '42', publicKey, installations: { 7: ['acme/app'] } } });
  gh.addFile('acme/app', 'c0ffee', '.expo-worker.yml', 'builds: {}\n');
});
afterAll(async () => {
  await gh?.stop();
});

const call = async (method: 'GET' | 'POST' | 'PATCH', path: string, credential: string | null, body?: unknown, accept = 'application/vnd.github+json') => {
  const res = await request(`${gh.url}${path}`, {
    method,
    headers: { accept, ...(credential === null ? {} : { authorization: `Bearer ${credential}` }), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text, json: (): unknown => JSON.parse(text) };
};

describe('the GitHub stand-in against GitHub OpenAPI description', () => {
  it('serves only routes that GitHub has, with their methods', () => {
    for (const route of STANDIN_ROUTES) expect(operation(route.method, route.spec), `${route.method} ${route.spec}`).toBeDefined();
    expect(operation('PUT', '/repos/{owner}/{repo}/check-runs')).toBeUndefined();
  });

  it('answers each route with what the description allows', async () => {
    const contents = await call('GET', '/repos/acme/app/contents/.expo-worker.yml?ref=c0ffee', TOKEN);
    expect(contents.status).toBe(200);
    expect(Buffer.from((contents.json() as { content: string }).content, 'base64').toString()).toBe('builds: {}\n');
    const raw = await call('GET', '/repos/acme/app/contents/.expo-worker.yml?ref=c0ffee', TOKEN, undefined, 'application/vnd.github.raw+json');
    expect(raw.text).toBe('builds: {}\n');
    expect((await call('GET', '/repos/acme/app/contents/missing.yml?ref=c0ffee', TOKEN)).status).toBe(404);
    expect((await call('POST', '/repos/acme/app/statuses/c0ffee', TOKEN, { state: 'pending', context: 'expo-worker/ios', description: 'queued' })).status).toBe(201);
    const jwt = appJwt('42', privateKey, Date.now());
    expect((await call('GET', '/repos/acme/app/installation', jwt)).json()).toMatchObject({ id: 7 });
    const minted = await call('POST', '/app/installations/7/access_tokens', jwt, { repositories: ['app'], permissions: { checks: 'write' } });
    expect(minted.status).toBe(201);
    const token = (minted.json() as { token: string }).token;
    const created = await call('POST', '/repos/acme/app/check-runs', token, { name: 'expo-worker/ios', head_sha: 'c0ffee', status: 'queued', external_id: 'b1' });
    expect(created.status).toBe(201);
    const id = (created.json() as { id: number }).id;
    const updated = await call('PATCH', `/repos/acme/app/check-runs/${id}`, token, { status: 'completed', conclusion: 'success', output: { title: 'ok', summary: 'done' } });
    expect(updated.json()).toMatchObject({ id, status: 'completed', conclusion: 'success' });
    // Refusals are GitHub's error shape too.
    expect((await call('POST', '/repos/acme/app/check-runs', TOKEN, { name: 'x', head_sha: 'c0ffee' })).status).toBe(403);
    expect((await call('GET', '/repos/acme/app/installation', TOKEN)).status).toBe(401);
    expect((await call('POST', '/repos/acme/app/statuses/c0ffee', 'ghp_wrong', { state: 'success' })).status).toBe(401);
    expect(gh.mismatches).toEqual([]);
  });

  it('catches a request body GitHub would not accept, and an answer GitHub would not give', async () => {
    const before = gh.mismatches.length;
    const res = await call('POST', '/repos/acme/app/statuses/c0ffee', TOKEN, { state: 'done', context: 7 });
    expect(res.status).toBe(500);
    expect(gh.mismatches.slice(before).join('\n')).toMatch(/request POST \/repos\/\{owner\}\/\{repo\}\/statuses\/\{sha\}: \/state must be equal to one of the allowed values/);
    gh.mismatches.length = before;
    expect(checkResponse('POST', '/repos/{owner}/{repo}/check-runs', 201, { id: 'one', name: 'x' }).length).toBeGreaterThan(0);
    expect(checkRequest('PATCH', '/repos/{owner}/{repo}/check-runs/{check_run_id}', { conclusion: 'great' }).length).toBeGreaterThan(0);
  });

  it("turns OpenAPI 3.0's nullable into a null alternative", () => {
    expect(fromOpenApi({ type: 'string', nullable: true, enum: ['a'] })).toEqual({ type: ['string', 'null'], enum: ['a', null] });
    expect(fromOpenApi({ allOf: [{ type: 'object' }], nullable: true })).toEqual({ anyOf: [{ type: 'null' }, { allOf: [{ type: 'object' }] }] });
    expect(fromOpenApi({ type: 'object', properties: { nullable: { type: 'boolean' } } })).toEqual({ type: 'object', properties: { nullable: { type: 'boolean' } } });
  });
});
