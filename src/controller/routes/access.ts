/** Access routes (docs/access.md): who am I; users (admin); API tokens; the audit log; drain, resume and remove workers. */
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { route } from '../route.ts';
import { ROUTES } from '../../protocol/routes.ts';
import type { AccessService } from '../access-service.ts';
import type { WorkerService } from '../worker-service.ts';

/** No body at all is the usual call for these POSTs; anything sent must be `{}`. */
const emptyBodyOk = {
  preValidation: async (req: { body: unknown }) => {
    if (req.body === undefined) req.body = {};
  },
};

export const accessRoutes: FastifyPluginAsync<{ access: AccessService; workers: WorkerService }> = async (fastify, { access, workers }) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

  route(app, ROUTES.me, {}, async (req) => access.me(req.principal));

  // ---- users ----
  // The password, given or made, is in the body or the answer only: never logged.
  route(app, ROUTES.createUser, {}, async (req, reply) => {
    const created = await access.createUser(req.principal, req.body);
    req.log.info({ user: created.user.name, role: created.user.role }, 'user added');
    return reply.status(201).send(created);
  });

  route(app, ROUTES.listUsers, {}, async () => ({ users: await access.listUsers() }));

  route(app, ROUTES.deleteUser, {}, async (req, reply) => {
    await access.deleteUser(req.principal, req.params.name);
    req.log.info({ user: req.params.name }, 'user removed');
    return reply.status(204).send();
  });

  route(app, ROUTES.setUserPassword, emptyBodyOk, async (req) => {
    const done = await access.setPassword(req.principal, req.params.name, req.body.password);
    req.log.info({ user: req.params.name }, 'user password set; their sessions ended');
    return done;
  });

  route(app, ROUTES.setUserRole, {}, async (req) => {
    const user = await access.setRole(req.principal, req.params.name, req.body.role);
    req.log.info({ user: user.name, role: user.role }, 'user role set');
    return user;
  });

  route(app, ROUTES.revokeUserSessions, {}, async (req) => {
    const revoked = await access.revokeSessions(req.principal, req.params.name);
    req.log.info({ user: req.params.name, revoked }, 'user sessions revoked');
    return { revoked };
  });

  // ---- tokens ----
  route(app, ROUTES.createToken, {}, async (req, reply) => {
    const created = await access.createToken(req.principal, req.body);
    req.log.info({ tokenId: created.token.id, role: created.token.role, owner: created.token.owner }, 'API token created');
    return reply.status(201).send(created);
  });

  route(app, ROUTES.listTokens, {}, async (req) => ({ tokens: await access.listTokens(req.principal) }));

  route(app, ROUTES.revokeToken, {}, async (req, reply) => {
    await access.revokeToken(req.principal, req.params.id);
    req.log.info({ tokenId: req.params.id }, 'API token revoked');
    return reply.status(204).send();
  });

  // ---- audit ----
  route(app, ROUTES.listAudit, {}, async (req) => {
    const { limit, before, action } = req.query;
    return access.listAudit({ limit: limit === undefined ? undefined : Number(limit), before: before === undefined ? undefined : Number(before), action });
  });

  // ---- workers, from the controller's side ----
  route(app, ROUTES.drainWorker, emptyBodyOk, async (req) => {
    const view = await workers.drain(req.params.id);
    await access.audit(req.principal, 'worker.drain', req.params.id);
    req.log.info({ workerId: req.params.id }, 'worker drained');
    return view;
  });

  route(app, ROUTES.resumeWorker, emptyBodyOk, async (req) => {
    const view = await workers.resume(req.params.id);
    await access.audit(req.principal, 'worker.resume', req.params.id);
    req.log.info({ workerId: req.params.id }, 'worker resumed');
    return view;
  });

  route(app, ROUTES.deleteWorker, {}, async (req, reply) => {
    await workers.remove(req.params.id);
    await access.audit(req.principal, 'worker.remove', req.params.id);
    req.log.info({ workerId: req.params.id }, 'worker removed');
    return reply.status(204).send();
  });
};
