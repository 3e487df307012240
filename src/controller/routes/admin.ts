/** Admin routes: enrol workers, submit, list (filtered by status or GitHub source), read, cancel and rerun builds, read logs. */
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { route } from '../route.ts';
import { ROUTES } from '../../protocol/routes.ts';
import type { BuildService } from '../build-service.ts';
import type { BuildRecord } from '../store/store.ts';
import { buildView } from '../views.ts';
import { whyWaiting, type WorkerLoad } from '../waiting.ts';
import type { WorkerService } from '../worker-service.ts';
import type { AccessService } from '../access-service.ts';

export const adminRoutes: FastifyPluginAsync<{ service: BuildService; workers: WorkerService; access: AccessService }> = async (fastify, { service, workers, access }) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

  /** Builds as shown, a queued one with why it waits (the workers read once, only when one is queued). */
  const views = async (builds: BuildRecord[]) => {
    let loads: WorkerLoad[] | undefined;
    if (builds.some((b) => b.status === 'queued')) loads = await workers.loads();
    return builds.map((b) => buildView(b, b.status === 'queued' && loads ? whyWaiting(b, loads) : undefined));
  };
  const view = async (b: BuildRecord) => (await views([b]))[0]!;

  route(app, ROUTES.createWorker, {}, async (req, reply) => {
    const { worker: w, apiKey } = await workers.enrol(req.body.id, req.body.labels ?? []);
    req.log.info({ workerId: w.id }, 'worker enrolled');
    await access.audit(req.principal, 'worker.create', w.id, w.labels.length > 0 ? `labels ${w.labels.join(', ')}` : null);
    return reply.status(201).send({ id: w.id, labels: w.labels, apiKey });
  });

  route(app, ROUTES.listWorkers, {}, async () => {
    return { workers: await workers.list() };
  });

  route(app, ROUTES.submitBuild, {}, async (req, reply) => {
    const build = await service.submit(req.body);
    req.log.info({ buildId: build.id, steps: build.steps.length, labels: build.labels }, 'build queued');
    await access.audit(req.principal, 'build.submit', build.id);
    return reply.status(201).send(await view(build));
  });

  route(app, ROUTES.listBuilds, {}, async (req) => {
    const { status, repo, ref, sha } = req.query;
    const builds = await service.listBuilds({ status, repo, ref, sha, limit: Number(req.query.limit ?? 100) });
    return { builds: await views(builds) };
  });

  route(app, ROUTES.getBuild, {}, async (req) => view(await service.getBuild(req.params.id)));

  route(
    app,
    ROUTES.cancelBuild,
    {
      // No body at all is the usual call; anything sent must be `{}` (unknown fields are refused as on every route).
      preValidation: async (req) => {
        if (req.body === undefined) req.body = {};
      },
    },
    async (req) => {
    const build = await service.cancel(req.params.id);
    req.log.info({ buildId: build.id, status: build.status }, 'build cancel requested');
    await access.audit(req.principal, 'build.cancel', build.id, build.status);
    return view(build);
    },
  );

  route(
    app,
    ROUTES.rerunBuild,
    {
      // No body at all is the usual call; anything sent must be `{}`.
      preValidation: async (req) => {
        if (req.body === undefined) req.body = {};
      },
    },
    async (req, reply) => {
      const build = await service.rerun(req.params.id);
      req.log.info({ buildId: build.id, rerunOf: req.params.id }, 'build rerun queued');
      await access.audit(req.principal, 'build.rerun', req.params.id, `as ${build.id}`);
      return reply.status(201).send(await view(build));
    },
  );

  route(app, ROUTES.readLog, {}, async (req, reply) => {
    const from = Number(req.query.offset ?? 0);
    const { build, log } = await service.readLog(req.params.id, from, req.query.limit === undefined ? undefined : Number(req.query.limit));
    // Headers let a follower resume at the right byte and know when the build is over.
    return reply
      .type('text/plain; charset=utf-8')
      .header('x-log-offset', String(from))
      .header('x-log-size', String(build.logBytes))
      .header('x-build-status', build.status)
      .send(log);
  });
};
