/** Admin routes: enrol workers, submit, list, read, cancel builds, read logs. */
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { requireAdmin } from '../auth.ts';
import type { BuildService } from '../build-service.ts';
import type { BuildRecord } from '../store/store.ts';
import { buildView } from '../views.ts';
import { whyWaiting, type WorkerLoad } from '../waiting.ts';
import type { WorkerService } from '../worker-service.ts';
import { BuildIdParams, CancelBody, CreateBuildBody, CreateWorkerBody, ListBuildsQuery, LogQuery } from '../../protocol/schemas.ts';

export const adminRoutes: FastifyPluginAsync<{ service: BuildService; workers: WorkerService }> = async (fastify, { service, workers }) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  app.addHook('preHandler', async (req) => requireAdmin(req.principal));

  /** Builds as shown, a queued one with why it waits (the workers read once, only when one is queued). */
  const views = async (builds: BuildRecord[]) => {
    let loads: WorkerLoad[] | undefined;
    if (builds.some((b) => b.status === 'queued')) loads = await workers.loads();
    return builds.map((b) => buildView(b, b.status === 'queued' && loads ? whyWaiting(b, loads) : undefined));
  };
  const view = async (b: BuildRecord) => (await views([b]))[0]!;

  app.post('/api/v1/workers', { schema: { body: CreateWorkerBody } }, async (req, reply) => {
    const { worker: w, apiKey } = await workers.enrol(req.body.id, req.body.labels ?? []);
    req.log.info({ workerId: w.id }, 'worker enrolled');
    return reply.status(201).send({ id: w.id, labels: w.labels, apiKey });
  });

  app.get('/api/v1/workers', async () => {
    return { workers: await workers.list() };
  });

  app.post('/api/v1/builds', { schema: { body: CreateBuildBody } }, async (req, reply) => {
    const build = await service.submit(req.body);
    req.log.info({ buildId: build.id, steps: build.steps.length, labels: build.labels }, 'build queued');
    return reply.status(201).send(await view(build));
  });

  app.get('/api/v1/builds', { schema: { querystring: ListBuildsQuery } }, async (req) => {
    const builds = await service.listBuilds({ status: req.query.status, limit: Number(req.query.limit ?? 100) });
    return { builds: await views(builds) };
  });

  app.get('/api/v1/builds/:id', { schema: { params: BuildIdParams } }, async (req) => view(await service.getBuild(req.params.id)));

  app.post(
    '/api/v1/builds/:id/cancel',
    {
      schema: { params: BuildIdParams, body: CancelBody },
      // No body at all is the usual call; anything sent must be `{}` (unknown fields are refused as on every route).
      preValidation: async (req) => {
        if (req.body === undefined) req.body = {};
      },
    },
    async (req) => {
    const build = await service.cancel(req.params.id);
    req.log.info({ buildId: build.id, status: build.status }, 'build cancel requested');
    return view(build);
    },
  );

  app.get('/api/v1/builds/:id/logs', { schema: { params: BuildIdParams, querystring: LogQuery } }, async (req, reply) => {
    const from = Number(req.query.offset ?? 0);
    const { build, log } = await service.readLog(req.params.id, from);
    // Headers let a follower resume at the right byte and know when the build is over.
    return reply
      .type('text/plain; charset=utf-8')
      .header('x-log-offset', String(from))
      .header('x-log-size', String(build.logBytes))
      .header('x-build-status', build.status)
      .send(log);
  });
};
