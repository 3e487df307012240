/**
 * Artifacts: the agent uploads each collected file while its attempt is current (lease-fenced,
 * streamed to disk, capped); admins list and download them.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Readable } from 'node:stream';
import { ExpoError } from '../../protocol/errors.ts';
import { ArtifactParams, ArtifactUploadHeaders, BuildIdParams } from '../../protocol/schemas.ts';
import { requireAdmin, requireAnyWorker } from '../auth.ts';
import type { ArtifactFiles } from '../artifact-files.ts';
import type { BuildService } from '../build-service.ts';
import type { Store } from '../store/store.ts';
import { artifactView } from '../views.ts';

export interface ArtifactRoutesOptions {
  service: BuildService;
  store: Store;
  files: ArtifactFiles;
  maxArtifactBytes: number;
  now: () => number;
}

export const artifactRoutes: FastifyPluginAsync<ArtifactRoutesOptions> = async (fastify, o) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  // The raw body stream, for this plugin's routes only: artifacts are written as they arrive.
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));

  app.put('/api/v1/builds/:id/artifacts/:name', { schema: { params: ArtifactParams, headers: ArtifactUploadHeaders } }, async (req, reply) => {
    const worker = requireAnyWorker(req.principal);
    // The lease travels in a header, not the URL: URLs end up in logs and error messages.
    const lease = req.headers['x-expo-lease'] as string;
    const { attempt } = await o.service.currentAttempt(worker, req.params.id, lease);
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > o.maxArtifactBytes) throw new ExpoError('API_BODY_TOO_LARGE', `artifact ${req.params.name} is larger than the cap of ${o.maxArtifactBytes} bytes`);
    if (!req.body) throw new ExpoError('API_UNSUPPORTED_MEDIA_TYPE', 'send the artifact as application/octet-stream');
    const { sizeBytes, sha256 } = await o.files.write(req.params.id, attempt.attempt, req.params.name, req.body as Readable, o.maxArtifactBytes);
    // The upload may have taken minutes: the attempt must still be current to record it.
    try {
      await o.service.currentAttempt(worker, req.params.id, lease);
    } catch (err) {
      await o.files.remove(req.params.id, attempt.attempt, req.params.name);
      throw err;
    }
    await o.store.putArtifact({ buildId: req.params.id, name: req.params.name, attempt: attempt.attempt, sizeBytes, sha256, createdAt: o.now() });
    req.log.info({ buildId: req.params.id, artifact: req.params.name, sizeBytes }, 'artifact stored');
    return reply.status(201).send({ name: req.params.name, attempt: attempt.attempt, sizeBytes, sha256 });
  });

  app.get('/api/v1/builds/:id/artifacts', { schema: { params: BuildIdParams } }, async (req) => {
    requireAdmin(req.principal);
    await o.service.getBuild(req.params.id);
    return { artifacts: (await o.store.listArtifacts(req.params.id)).map(artifactView) };
  });

  app.get('/api/v1/builds/:id/artifacts/:name', { schema: { params: ArtifactParams } }, async (req, reply) => {
    requireAdmin(req.principal);
    await o.service.getBuild(req.params.id);
    const known = (await o.store.listArtifacts(req.params.id)).find((a) => a.name === req.params.name);
    const file = known ? await o.files.open(req.params.id, known.attempt, req.params.name) : null;
    if (!known || !file) throw new ExpoError('API_NOT_FOUND', `build ${req.params.id} has no artifact '${req.params.name}'`);
    return reply
      .type('application/octet-stream')
      .header('content-length', String(file.sizeBytes))
      .header('content-disposition', `attachment; filename="${req.params.name}"`)
      .header('x-artifact-sha256', known.sha256)
      .send(file.stream);
  });
};
