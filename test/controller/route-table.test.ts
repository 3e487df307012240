/**
 * The route table (src/protocol/routes.ts) is the controller's routes, the clients' calls and
 * docs/api.md's list at once: the app registers exactly its entries, the guard refuses a route
 * registered around it, and the docs name every entry with its auth and no route outside it.
 */
import { readFileSync } from 'node:fs';
import Fastify from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pathOf, ROUTES, type RouteSpec } from '../../src/protocol/routes.ts';
import { guardRouteTable, route } from '../../src/controller/route.ts';
import { startTestController, type TestController } from './support.ts';

const table = Object.values(ROUTES as Record<string, RouteSpec>);
const doc = readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8');

describe('the route table', () => {
  it('gives each method and path once', () => {
    const keys = table.map((r) => `${r.method} ${r.path}`);
    expect(new Set(keys).size).toBe(keys.length);
  });

  describe('in the running app', () => {
    let c: TestController;
    beforeAll(async () => {
      c = await startTestController({ githubSecret: 'route-table-github-secret' });
    });
    afterAll(async () => {
      await c.close();
    });

    it('is what the controller registers', () => {
      for (const r of table) expect(c.app.hasRoute({ method: r.method, url: r.path }), `${r.method} ${r.path}`).toBe(true);
    });

    it('asks a key of every route but the public ones; a dashboard page sends a visitor to sign in instead', async () => {
      for (const r of table) {
        const url = pathOf(r, { id: r.path.includes('/workers/') ? 'mac-1' : r.path.includes('/tokens/') ? 'tok_abcdefghijklmnop' : 'abcdefgh23456789', '*': 'out/App.ipa', name: 'APPLE_API_KEY', file: 'app.css' });
        const res = await c.app.inject({ method: r.method, url });
        const what = `${r.method} ${url}`;
        // The sign-in form without a name and password: refused as bad input, never as a missing key.
        if (r.auth === 'public') expect(res.statusCode, what).toBe(r.method === 'GET' ? 200 : 400);
        // No key is asked of it: the delivery's signature is, and a request without one is refused.
        else if (r.auth === 'github-signature') expect({ status: res.statusCode, code: (res.json() as { code: string }).code }, what).toEqual({ status: 401, code: 'WEBHOOK_SIGNATURE' });
        else if ('page' in r && r.page) expect({ status: res.statusCode, location: res.headers.location }, what).toEqual({ status: 303, location: expect.stringMatching(/^\/login(\?next=|$)/) });
        else expect({ status: res.statusCode, code: (res.json() as { code: string }).code }, what).toEqual({ status: 401, code: 'AUTH_MISSING' });
      }
    });
  });

  describe('the guard', () => {
    const guarded = () => {
      const app = Fastify().withTypeProvider<TypeBoxTypeProvider>();
      guardRouteTable(app);
      return app;
    };
    /** Registration errors surface either at once or when the app is readied. */
    const refusal = async (register: (app: ReturnType<typeof guarded>) => void): Promise<unknown> => {
      const app = guarded();
      try {
        register(app);
        await app.ready();
        return null;
      } catch (err) {
        return err;
      } finally {
        await app.close();
      }
    };

    it('accepts a route registered from the table', async () => {
      expect(await refusal((app) => route(app, ROUTES.health, {}, async () => ({})))).toBeNull();
    });

    it('refuses a route registered by hand, even at a path of the table', async () => {
      expect(await refusal((app) => app.get('/api/v1/extra', async () => ({})))).toMatchObject({ message: expect.stringContaining('GET /api/v1/extra is not registered from the route table') as string });
      expect(await refusal((app) => app.get('/health', async () => ({})))).toMatchObject({ message: expect.stringContaining('GET /health') as string });
    });

    it('refuses a route that names a table entry in its config without route() and its scope check', async () => {
      // The forgery a hostile review found: the table's method, path and entry, but no scope check.
      const forged = await refusal((app) => app.get('/api/v1/builds', { config: { routeSpec: ROUTES.listBuilds } }, async () => ({})));
      expect(forged).toMatchObject({ message: expect.stringContaining('GET /api/v1/builds is not registered from the route table') as string });
      // A preHandler of its own does not stand in for route()'s check.
      const ownCheck = await refusal((app) =>
        app.route({ method: 'GET', url: '/api/v1/builds', config: { routeSpec: ROUTES.listBuilds }, preHandler: async () => {}, handler: async () => ({}) }),
      );
      expect(ownCheck).toMatchObject({ message: expect.stringContaining('GET /api/v1/builds') as string });
    });

    it('refuses an entry that is not the table', async () => {
      const stray = { method: 'POST', path: '/api/v1/stray', auth: 'admin', schema: {}, okStatus: 200 } as const satisfies RouteSpec;
      expect(await refusal((app) => route(app, stray, {}, async () => ({})))).toMatchObject({ message: expect.stringContaining('POST /api/v1/stray') as string });
    });
  });

  describe('and docs/api.md', () => {
    const listed = doc.slice(doc.indexOf('<!-- routes:start -->'), doc.indexOf('<!-- routes:end -->'));
    const rows = [...listed.matchAll(/^\| `([A-Z]+)` \| `([^`]+)` \| `([a-z-]+)` \|$/gm)].map((m) => ({ method: m[1]!, path: m[2]!, auth: m[3]! }));

    it('lists every route with its method, path and auth, and no other', () => {
      const want = table.map((r) => ({ method: r.method, path: r.path, auth: r.auth }));
      const key = (r: { method: string; path: string }) => `${r.method} ${r.path}`;
      expect([...rows].sort((a, b) => key(a).localeCompare(key(b)))).toEqual([...want].sort((a, b) => key(a).localeCompare(key(b))));
    });

    it('describes only routes of the table in its headings', () => {
      const known = new Set(table.map((r) => `${r.method} ${r.path}`));
      const headings = [...doc.matchAll(/^###? .*$/gm)].map((m) => m[0]);
      // `<name>` in prose stands for the wildcard; `[?…]` shows the query.
      const named = headings.flatMap((h) => [...h.matchAll(/`(GET|POST|PUT|DELETE|PATCH) (\/[^`\s[]*)(?:\[[^\]]*\])?`/g)].map((m) => `${m[1]} ${m[2]!.replace(/<name>$/, '*')}`));
      expect(named.length).toBeGreaterThan(15);
      expect(named.filter((n) => !known.has(n))).toEqual([]);
    });
  });
});
