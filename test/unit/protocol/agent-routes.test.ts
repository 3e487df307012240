/** The agent's schema-free routes are rows of the one route table, method and path alike. */
import { describe, expect, it } from 'vitest';
import { AGENT_ROUTES } from '../../../src/protocol/agent-routes.ts';
import { ROUTES } from '../../../src/protocol/routes.ts';

describe('AGENT_ROUTES', () => {
  it('names routes of the table, each with its method and path', () => {
    for (const [name, row] of Object.entries(AGENT_ROUTES)) {
      const route = (ROUTES as Record<string, { method: string; path: string }>)[name];
      expect(route, name).toBeDefined();
      expect({ method: row.method, path: row.path }, name).toEqual({ method: route!.method, path: route!.path });
    }
  });
});
