/**
 * Keeps the error-code table in src/protocol/errors.ts (the one retry table) and the ones in
 * docs/api.md (HTTP codes) and docs/vm-layer.md (the others) in sync, code, status, retried and
 * meaning; checks that every code src/ names is in the table; and that every error Fastify or
 * Node's HTTP parser can send a client is one of those codes.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorCodes } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES, ExpoError } from '../../src/protocol/errors.ts';
import { clientErrorAnswer, FASTIFY_ERROR_MAP, FASTIFY_ERRORS_NOT_SENT, mapFastifyError } from '../../src/controller/http-errors.ts';
import { startTestController, type TestController } from './support.ts';

const codeTable = (file: string): string => {
  const doc = readFileSync(new URL(`../../docs/${file}`, import.meta.url), 'utf8');
  return doc.slice(doc.indexOf('<!-- error-codes:start -->'), doc.indexOf('<!-- error-codes:end -->'));
};
const retried = (cell: string): boolean => {
  if (cell !== 'yes' && cell !== 'no') throw new Error(`retried is 'yes' or 'no', not '${cell}'`);
  return cell === 'yes';
};
const documented = new Map(
  [...codeTable('api.md').matchAll(/^\| `([A-Z_]+)` \| (\d+) \| (\w+) \| (.+) \|$/gm)].map((m) => [m[1]!, { status: Number(m[2]), retryable: retried(m[3]!), summary: m[4]! }]),
);
const documentedElsewhere = new Map(
  [...codeTable('vm-layer.md').matchAll(/^\| `([A-Z_]+)` \| (\w+) \| (.+) \|$/gm)].map((m) => [m[1]!, { status: 0, retryable: retried(m[2]!), summary: m[3]! }]),
);
const apiCodes = Object.entries(ERROR_CODES).filter(([, v]) => v.status > 0);
const otherCodes = Object.entries(ERROR_CODES).filter(([, v]) => v.status === 0);

/** Every `.ts` file under src/. */
function sourceFiles(dir = fileURLToPath(new URL('../../src', import.meta.url))): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

describe('error codes', () => {
  it('documents every API code with its status, whether it is retried and its meaning', () => {
    expect([...documented.keys()].sort()).toEqual(apiCodes.map(([k]) => k).sort());
    for (const [code, v] of apiCodes) expect(documented.get(code), code).toEqual(v);
  });

  it('documents every other code (no HTTP status) in docs/vm-layer.md with whether it is retried and its meaning', () => {
    expect([...documentedElsewhere.keys()].sort()).toEqual(otherCodes.map(([k]) => k).sort());
    for (const [code, v] of otherCodes) expect(documentedElsewhere.get(code), code).toEqual(v);
  });

  it('knows every code src/ names (thrown, answered or branched on)', () => {
    const named = new Set<string>();
    for (const file of sourceFiles()) {
      for (const m of readFileSync(file, 'utf8').matchAll(/['"`]((?:API|AUTH|WORKER|LEASE|BUILD|LOG|STORE|CFG|EXEC|SSH|VM|HTTP|WEBHOOK|PROJECT|GITHUB)_[A-Z][A-Z_]*)['"`]/g)) named.add(m[1]!);
    }
    expect(named.size).toBeGreaterThan(30);
    expect([...named].filter((c) => !Object.hasOwn(ERROR_CODES, c))).toEqual([]);
  });

  it('prefixes every code by its area', () => {
    for (const code of Object.keys(ERROR_CODES)) expect(code).toMatch(/^(API|AUTH|USER|WORKER|LEASE|BUILD|LOG|STORE|CFG|EXEC|SSH|VM|HTTP|WEBHOOK|PROJECT|GITHUB)_[A-Z_]+$/);
  });

  it('carries status and retryability on the error itself', () => {
    const e = new ExpoError('LOG_OFFSET_GAP', 'gap', { details: { expectedOffset: 3 } });
    expect(e.status).toBe(409);
    expect(e.retryable).toBe(false);
    expect(e.details).toEqual({ expectedOffset: 3 });
    expect(new ExpoError('STORE_FAILED', 'x').retryable).toBe(true);
  });
});

describe('codes that come from Fastify and from the HTTP parser', () => {
  /** Every Fastify error whose status is a client's business (all but the plain 500s of misconfiguration). */
  const clientFacing = Object.entries(errorCodes)
    .map(([code, Ctor]) => [code, (new (Ctor as new (...a: string[]) => { statusCode?: number })('a', 'b', 'c')).statusCode ?? 500] as const)
    .filter(([, status]) => status !== 500);

  it('maps every client-facing Fastify code to a documented code of ours, or says why it cannot be sent', () => {
    expect(clientFacing.length).toBeGreaterThan(5);
    for (const [code] of clientFacing) {
      expect(Object.hasOwn(FASTIFY_ERROR_MAP, code) || Object.hasOwn(FASTIFY_ERRORS_NOT_SENT, code), `${code} is neither mapped nor listed as never sent`).toBe(true);
    }
    for (const [fst, ours] of Object.entries(FASTIFY_ERROR_MAP)) expect(documented.has(ours), `${fst} → ${ours}`).toBe(true);
  });

  it('maps the parser errors to documented codes', () => {
    for (const code of ['HPE_HEADER_OVERFLOW', 'ERR_HTTP_REQUEST_TIMEOUT', 'HPE_INVALID_METHOD', 'HPE_INVALID_URL']) {
      const answer = clientErrorAnswer(Object.assign(new Error(code), { code }));
      expect(documented.has(answer.code), `${code} → ${answer.code}`).toBe(true);
    }
  });

  describe('found by sending each kind of bad input', () => {
    let c: TestController;
    beforeAll(async () => {
      c = await startTestController();
    });
    afterAll(async () => {
      await c.close();
    });

    const cases: [string, () => Promise<{ statusCode: number; body: string }>][] = [
      ['FST_ERR_CTP_INVALID_JSON_BODY', () => c.app.inject({ method: 'POST', url: '/api/v1/builds', headers: { ...c.admin, 'content-type': 'application/json' }, payload: '{' })],
      ['FST_ERR_CTP_EMPTY_JSON_BODY', () => c.app.inject({ method: 'POST', url: '/api/v1/builds', headers: { ...c.admin, 'content-type': 'application/json' }, payload: '' })],
      ['FST_ERR_CTP_INVALID_MEDIA_TYPE', () => c.app.inject({ method: 'POST', url: '/api/v1/builds', headers: { ...c.admin, 'content-type': 'text/csv' }, payload: 'a,b' })],
      ['FST_ERR_CTP_BODY_TOO_LARGE', () => c.app.inject({ method: 'POST', url: '/api/v1/builds', headers: c.admin, payload: { pad: 'x'.repeat(2 * 1024 * 1024) } })],
      ['FST_ERR_VALIDATION', () => c.app.inject({ method: 'POST', url: '/api/v1/builds', headers: c.admin, payload: { steps: 'no' } })],
      ['FST_ERR_BAD_URL', () => c.app.inject({ method: 'GET', url: '/api/v1/builds/%ff', headers: c.admin })],
      ['FST_ERR_MAX_PARAM_LENGTH', () => c.app.inject({ method: 'GET', url: `/api/v1/builds/${'a'.repeat(150)}`, headers: c.admin })],
      ['FST_ERR_NOT_FOUND', () => c.app.inject({ method: 'DELETE', url: '/api/v1/builds', headers: c.admin })],
    ];
    it.each(cases)('%s reaches the client as the mapped code', async (fst, send) => {
      const res = await send();
      const ours = mapFastifyError(fst)!;
      expect(res.statusCode, res.body).toBe(ERROR_CODES[ours].status);
      expect(JSON.parse(res.body)).toEqual({ code: ours, message: expect.any(String) as string });
    });
  });
});
