/** `pathOf`: the concrete paths clients call, built from the route table. */
import { describe, expect, it } from 'vitest';
import { pathOf, ROUTES } from '../../../src/protocol/routes.ts';

describe('pathOf', () => {
  it('fills each parameter, percent-encoded whole', () => {
    expect(pathOf(ROUTES.getBuild, { id: 'abcdefgh23456789' })).toBe('/api/v1/builds/abcdefgh23456789');
    expect(pathOf(ROUTES.poll, { id: 'mac mini/1?' })).toBe('/api/v1/workers/mac%20mini%2F1%3F/poll');
  });

  it('keeps the slashes of a wildcard and encodes each of its segments', () => {
    expect(pathOf(ROUTES.uploadArtifact, { id: 'abcdefgh23456789', '*': 'ios/build/My App#1.ipa' })).toBe('/api/v1/builds/abcdefgh23456789/artifacts/ios/build/My%20App%231.ipa');
  });

  it('appends the query, leaving out what is undefined', () => {
    expect(pathOf(ROUTES.readLog, { id: 'abcdefgh23456789' }, { offset: 12 })).toBe('/api/v1/builds/abcdefgh23456789/logs?offset=12');
    expect(pathOf(ROUTES.listBuilds, {}, { limit: 5, status: undefined })).toBe('/api/v1/builds?limit=5');
    expect(pathOf(ROUTES.health, {})).toBe('/health');
  });

  it('refuses a missing parameter instead of sending a path with a hole', () => {
    expect(() => pathOf(ROUTES.phase, {} as { id: string })).toThrow(/missing parameter 'id'/);
  });
});
