/**
 * The clone token of a GitHub build, for the worker holding it: `POST /api/v1/builds/:id/
 * checkout-token` with the attempt's lease. The worker must hold the build under that lease (409
 * `LEASE_STALE` otherwise), the build must have come from GitHub (404 `API_NOT_FOUND`), and the
 * token is whatever the GitHub port gives for the build's repository — a fresh repository-scoped
 * installation token in App mode, the configured token, or null (clone anonymously). GitHub
 * unreachable is a 503 `GITHUB_UNAVAILABLE` the agent retries; GitHub refusing (App not
 * installed, no permission) a 422 `GITHUB_REFUSED` that fails the build with the reason. The token is never logged or stored:
 * answers' bodies are not logged, and this route logs only that a token was handed out.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { GithubApi } from '../../github/api.ts';
import { ExpoError, isExpoError } from '../../protocol/errors.ts';
import { ROUTES } from '../../protocol/routes.ts';
import { requireAnyWorker } from '../auth.ts';
import type { BuildService } from '../build-service.ts';
import { route } from '../route.ts';

export interface CheckoutRoutesOptions {
  service: Pick<BuildService, 'currentAttempt'>;
  github: Pick<GithubApi, 'cloneToken'>;
}

/** The port without GitHub credentials: every clone is anonymous. */
export const ANONYMOUS_CLONES: Pick<GithubApi, 'cloneToken'> = { cloneToken: async () => ({ token: null, expiresAt: null }) };

export const checkoutRoutes: FastifyPluginAsync<CheckoutRoutesOptions> = async (fastify, { service, github }) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

  route(app, ROUTES.checkoutToken, {}, async (req) => {
    const worker = requireAnyWorker(req.principal);
    const { build } = await service.currentAttempt(worker, req.params.id, req.body.lease);
    // `== null`: a record from a store that predates sources has none at all.
    if (build.source == null) throw new ExpoError('API_NOT_FOUND', `build ${build.id} has no repository to check out`);
    let clone;
    try {
      clone = await github.cloneToken(build.source.repo);
    } catch (err) {
      if (!isExpoError(err) || !err.code.startsWith('GITHUB_')) throw err;
      // The port's errors never hold a token. A refusal is final (the build fails with it); an
      // outage or rate limit is worth the agent's retries.
      const code = err.code === 'GITHUB_STATUS' ? 'GITHUB_REFUSED' : 'GITHUB_UNAVAILABLE';
      throw new ExpoError(code, `no clone token for ${build.source.repo}: ${err.message}`, { cause: err });
    }
    req.log.info({ buildId: build.id, repo: build.source.repo, anonymous: clone.token === null }, 'clone token handed out');
    return { token: clone.token, expiresAt: clone.expiresAt === null ? null : new Date(clone.expiresAt).toISOString() };
  });
};
