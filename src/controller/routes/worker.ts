/** Routes agents and the in-VM monitor call: poll, worker heartbeat, build heartbeat, phase, logs, complete. */
import type { FastifyBaseLogger, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { livenessHeaders } from '../../protocol/liveness.ts';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { requireAnyWorker, requireWorker } from '../auth.ts';
import type { BuildService } from '../build-service.ts';
import type { ControllerMetrics } from '../metrics.ts';
import type { WorkerService } from '../worker-service.ts';
import { assignedBuild, buildView } from '../views.ts';
import { LIMITS } from '../../protocol/schemas.ts';
import { ROUTES, type RouteSpec } from '../../protocol/routes.ts';
import { route } from '../route.ts';

/** Aborted when the client goes away before its answer is written (a long wait is then dropped). */
function clientGone(reply: FastifyReply): AbortSignal {
  const gone = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) gone.abort();
  });
  return gone.signal;
}

export const workerRoutes: FastifyPluginAsync<{ service: BuildService; workers: WorkerService; metrics: ControllerMetrics }> = async (fastify, { service, workers, metrics }) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  // Every answer to a worker states the controller's clocks (see src/protocol/liveness.ts).
  const stated = livenessHeaders(service.liveness);
  // The worker's own routes, by their route table entry (never by the URL string, which may be
  // percent-encoded or absolute-form). The hook is added to those routes only, as they are
  // registered, so that the others (the build heartbeat above all) run none.
  const ownRoutes = new Set<RouteSpec>([ROUTES.getWorker, ROUTES.poll, ROUTES.workerHeartbeat]);
  const stateClocks = async (_req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    reply.headers(stated);
  };
  app.addHook('onRoute', (opts) => {
    const spec = opts.config?.routeSpec;
    if (spec && ownRoutes.has(spec)) opts.onSend = [...(opts.onSend === undefined ? [] : [opts.onSend].flat()), stateClocks];
  });

  route(app, ROUTES.poll, {}, async (req, reply) => {
    const worker = requireWorker(req.principal, req.params.id);
    metrics.workerHeartbeats.inc({ kind: 'poll' });
    const result = await service.poll(worker, req.body, clientGone(reply));
    if (!result) return reply.status(204).send();
    // An answer its client never got whole (it left as the answer was written) would leave the
    // build claimed, unseen, until the claim grace — and then claimed again: it goes back now.
    let written = false;
    reply.raw.once('finish', () => (written = true));
    reply.raw.once('close', () => {
      if (!written) void result.unanswered().catch((err: unknown) => req.log.warn({ buildId: result.claim.build.id, err: (err as Error).message }, 'could not put back a claim its poll never received'));
    });
    // Logged after the answer is written (a log line is a write of its own): the claimed worker hears first.
    setImmediate(() => req.log.info({ buildId: result.claim.build.id, workerId: worker.id, attempt: result.claim.attempt.attempt }, 'build claimed'));
    return { build: assignedBuild(result.claim, result.secretEnv), lease: result.lease, buildToken: result.buildToken };
  });

  // A worker's view of itself (what `doctor` uses to check its key without side effects).
  route(app, ROUTES.getWorker, {}, async (req) => {
    const p = req.principal;
    // The scope check let through only this worker's key or a viewer (or above).
    if (p.kind !== 'worker') return workers.view(req.params.id);
    return workers.view(requireWorker(p, req.params.id).id);
  });

  route(app, ROUTES.workerHeartbeat, {}, async (req, reply) => {
    const worker = requireWorker(req.principal, req.params.id);
    metrics.workerHeartbeats.inc({ kind: 'heartbeat' });
    const { abort, cancel } = await service.workerHeartbeat(worker, req.body, clientGone(reply));
    return { status: 'ok', abort, cancel };
  });

  // The hot path (every running build, from its VM), so only the work a bare route does: a
  // machine's route takes no browser security headers (they were most of the answer's bytes);
  // the answer goes through the compiled serializer; and one logger serves every heartbeat
  // instead of a child made per request (pino serializes and redacts a child's bindings as it
  // is made) — its lines name the route, not the request id.
  let heartbeatLog: FastifyBaseLogger | null = null;
  const childLoggerFactory = (logger: FastifyBaseLogger): FastifyBaseLogger => (heartbeatLog ??= logger.child({ route: 'build heartbeat' }));
  route(app, ROUTES.buildHeartbeat, { helmet: false, serializeAnswer: true, childLoggerFactory }, async (req) => {
    const pulse = await service.buildHeartbeat(req.principal, req.params.id, req.body);
    metrics.buildHeartbeats.inc();
    return pulse;
  });

  route(app, ROUTES.phase, {}, async (req) => {
    const worker = requireAnyWorker(req.principal);
    return buildView(await service.phase(worker, req.params.id, req.body.lease, req.body.phase, req.body.step));
  });

  route(app, ROUTES.appendLog, { bodyLimit: LIMITS.logBodyBytes }, async (req) => {
    const worker = requireAnyWorker(req.principal);
    return { logBytes: await service.appendLog(worker, req.params.id, req.body) };
  });

  route(app, ROUTES.complete, {}, async (req) => {
    const worker = requireAnyWorker(req.principal);
    const build = await service.complete(worker, req.params.id, req.body);
    return buildView(build);
  });
};
