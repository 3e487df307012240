/** Keeps the error-code table in src/protocol/errors.ts and the one in docs/api.md in sync. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, ExpoError } from '../../src/protocol/errors.ts';

const doc = readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8');
const table = doc.slice(doc.indexOf('<!-- error-codes:start -->'), doc.indexOf('<!-- error-codes:end -->'));
const documented = new Map(
  [...table.matchAll(/^\| `([A-Z_]+)` \| (\d+) \| (.+) \|$/gm)].map((m) => [m[1]!, { status: Number(m[2]), summary: m[3]! }]),
);
const apiCodes = Object.entries(ERROR_CODES).filter(([, v]) => v.status > 0);

describe('error codes', () => {
  it('documents every API code with its status and meaning', () => {
    expect([...documented.keys()].sort()).toEqual(apiCodes.map(([k]) => k).sort());
    for (const [code, v] of apiCodes) expect(documented.get(code), code).toEqual({ status: v.status, summary: v.summary });
  });

  it('prefixes every code by its area', () => {
    for (const code of Object.keys(ERROR_CODES)) expect(code).toMatch(/^(API|AUTH|WORKER|LEASE|BUILD|LOG|STORE|CFG|EXEC|SSH|VM|HTTP)_[A-Z_]+$/);
  });

  it('carries status and retryability on the error itself', () => {
    const e = new ExpoError('LOG_OFFSET_GAP', 'gap', { details: { expectedOffset: 3 } });
    expect(e.status).toBe(409);
    expect(e.retryable).toBe(false);
    expect(e.details).toEqual({ expectedOffset: 3 });
    expect(new ExpoError('STORE_FAILED', 'x').retryable).toBe(true);
  });
});
