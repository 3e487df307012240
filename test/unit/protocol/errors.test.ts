/** The one retry table: `isRetryable` reads the catalogue; `answerErrorCode` says what an HTTP error answer is. */
import { describe, expect, it } from 'vitest';
import { answerErrorCode, ERROR_CODES, isRetryable } from '../../../src/protocol/errors.ts';

describe('isRetryable', () => {
  it('is the catalogue column, code by code', () => {
    for (const [code, v] of Object.entries(ERROR_CODES)) expect(isRetryable(code), code).toBe(v.retryable);
  });

  it('is false for what is not a code of ours', () => {
    expect(isRetryable('NOT_A_CODE')).toBe(false);
    expect(isRetryable(undefined)).toBe(false);
    expect(isRetryable('toString')).toBe(false);
  });
});

describe('answerErrorCode', () => {
  it("takes the controller's own code when its status matches", () => {
    expect(answerErrorCode(409, { code: 'LEASE_STALE', message: 'x' })).toBe('LEASE_STALE');
    expect(answerErrorCode(503, { code: 'API_SHUTTING_DOWN', message: 'x' })).toBe('API_SHUTTING_DOWN');
    expect(answerErrorCode(507, { code: 'STORE_FULL', message: 'x' })).toBe('STORE_FULL');
    expect(answerErrorCode(408, { code: 'API_REQUEST_TIMEOUT', message: 'x' })).toBe('API_REQUEST_TIMEOUT');
  });

  it('judges an answer without a code of ours (a proxy, another server) by its status', () => {
    for (const status of [500, 502, 503, 504, 408, 429]) expect(answerErrorCode(status, null), String(status)).toBe('HTTP_UNREACHABLE');
    for (const status of [400, 401, 403, 404, 409, 413]) expect(answerErrorCode(status, null), String(status)).toBe('HTTP_STATUS');
    // A code that does not go with the status is not the controller's answer.
    expect(answerErrorCode(502, { code: 'API_BAD_REQUEST' })).toBe('HTTP_UNREACHABLE');
    expect(answerErrorCode(404, { code: 'SOMETHING_NEW' })).toBe('HTTP_STATUS');
    expect(answerErrorCode(404, '<html>')).toBe('HTTP_STATUS');
  });

  it('makes retryable exactly the answers worth another try', () => {
    expect(isRetryable(answerErrorCode(503, { code: 'API_SHUTTING_DOWN' }))).toBe(true);
    expect(isRetryable(answerErrorCode(408, { code: 'API_REQUEST_TIMEOUT' }))).toBe(true);
    expect(isRetryable(answerErrorCode(502, null))).toBe(true);
    expect(isRetryable(answerErrorCode(409, { code: 'BUILD_OVER' }))).toBe(false);
    expect(isRetryable(answerErrorCode(401, { code: 'AUTH_INVALID' }))).toBe(false);
  });
});
