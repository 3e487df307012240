/** Project routes (admin): register, list, read and delete projects; set and delete their secrets (write-only). */
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { route } from '../route.ts';
import { ROUTES } from '../../protocol/routes.ts';
import type { ProjectService } from '../project-service.ts';
import { projectView } from '../views.ts';
import type { AccessService } from '../access-service.ts';

export const projectRoutes: FastifyPluginAsync<{ projects: ProjectService; access: AccessService }> = async (fastify, { projects, access }) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

  route(app, ROUTES.createProject, {}, async (req, reply) => {
    const p = await projects.create(req.body);
    req.log.info({ projectId: p.id, repo: p.repo }, 'project registered');
    await access.audit(req.principal, 'project.add', p.repo, p.id);
    return reply.status(201).send(projectView(p));
  });

  route(app, ROUTES.listProjects, {}, async () => ({ projects: (await projects.list()).map(projectView) }));

  route(app, ROUTES.getProject, {}, async (req) => projectView(await projects.get(req.params.id)));

  route(app, ROUTES.deleteProject, {}, async (req, reply) => {
    await projects.delete(req.params.id);
    req.log.info({ projectId: req.params.id }, 'project deleted');
    await access.audit(req.principal, 'project.remove', req.params.id);
    return reply.status(204).send();
  });

  // The value is in the body only: never logged (the request line is logged without it), never answered.
  route(app, ROUTES.putProjectSecret, {}, async (req) => {
    const stored = await projects.putSecret(req.params.id, req.params.name, req.body.value);
    req.log.info({ projectId: req.params.id, secretName: stored.name }, 'project secret set');
    await access.audit(req.principal, 'secret.set', `${req.params.id}/${stored.name}`);
    return { name: stored.name, updatedAt: new Date(stored.updatedAt).toISOString() };
  });

  route(app, ROUTES.deleteProjectSecret, {}, async (req, reply) => {
    await projects.deleteSecret(req.params.id, req.params.name);
    req.log.info({ projectId: req.params.id, secretName: req.params.name }, 'project secret deleted');
    await access.audit(req.principal, 'secret.remove', `${req.params.id}/${req.params.name}`);
    return reply.status(204).send();
  });
};
