/** Admin: prune old final builds now, or count what a prune would delete (`dryRun`). */
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ExpoError } from '../../protocol/errors.ts';
import { ROUTES } from '../../protocol/routes.ts';
import { route } from '../route.ts';
import type { Retention } from '../retention.ts';
import type { AccessService } from '../access-service.ts';

export const retentionRoutes: FastifyPluginAsync<{ retention: Retention; access: AccessService }> = async (fastify, { retention, access }) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

  route(
    app,
    ROUTES.prune,
    {
      // Both fields are optional, so no body at all is a call too (as for cancel); anything sent must still be an object.
      preValidation: async (req) => {
        if (req.body === undefined) req.body = {};
      },
    },
    async (req) => {
      const days = req.body.olderThanDays ?? retention.retentionDays;
      if (req.body.olderThanDays === undefined && days === 0) {
        throw new ExpoError('API_BAD_REQUEST', 'this controller keeps builds forever (--retention-days 0): name olderThanDays');
      }
      const dryRun = req.body.dryRun ?? false;
      const result = await retention.prune(days, dryRun);
      req.log.info(result, dryRun ? 'prune dry run' : 'pruned builds');
      if (!dryRun) await access.audit(req.principal, 'retention.prune', `older than ${days} days`, `${result.builds} builds, ${result.artifacts} artifacts`);
      return result;
    },
  );
};
