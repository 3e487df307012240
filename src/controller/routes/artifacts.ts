/**
 * Artifacts: the agent uploads each collected file while its attempt is current (lease-fenced,
 * streamed, capped); admins list and download them (from an S3 bucket: by a 302 to a presigned URL). An artifact's name is its path
 * relative to the build's work directory (`ios/build/App.ipa`), so the routes end in a wildcard
 * (`/` allowed, raw or as `%2F`, and no path-parameter length limit: the name's own byte limit,
 * `ARTIFACT_NAME_MAX_BYTES`, is the one the build spec and the agent use too).
 */
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Readable } from 'node:stream';
import { artifactNameProblem } from '../../protocol/domain.ts';
import { ExpoError } from '../../protocol/errors.ts';
import { ROUTES } from '../../protocol/routes.ts';
import { route } from '../route.ts';
import { requireAnyWorker } from '../auth.ts';
import type { ArtifactService } from '../artifact-service.ts';
import { artifactView } from '../views.ts';
import { contentDisposition } from '../content-disposition.ts';

/** How long a presigned download URL (S3) stays good, s: long enough to start a download. */
const DOWNLOAD_URL_TTL_S = 300;

export interface ArtifactRoutesOptions {
  artifacts: ArtifactService;
}

export const artifactRoutes: FastifyPluginAsync<ArtifactRoutesOptions> = async (fastify, o) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  // An artifact is bytes whatever its Content-Type says (a JSON or text file is still a file):
  // for this plugin's routes only, every body — any type, or none named — reaches the route as
  // the raw stream, written to disk as it arrives. bodyLimit does not apply to a stream; the
  // route's own cap does.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  route(app, ROUTES.uploadArtifact, {}, async (req, reply) => {
    const worker = requireAnyWorker(req.principal);
    const name = artifactName(req.params['*']);
    const stored = await o.artifacts.upload(worker, {
      buildId: req.params.id,
      name,
      // The lease travels in a header, not the URL: URLs end up in logs and error messages.
      lease: req.headers['x-expo-lease'] as string,
      declaredBytes: Number(req.headers['content-length'] ?? 0),
      body: isStream(req.body) ? req.body : emptyBody(),
    });
    const { attempt, sizeBytes, sha256 } = stored;
    req.log.info({ buildId: req.params.id, artifact: name, sizeBytes }, 'artifact stored');
    return reply.status(201).send({ name, attempt, sizeBytes, sha256 });
  });

  route(app, ROUTES.listArtifacts, {}, async (req) => {
    const { artifacts, problems } = await o.artifacts.list(req.params.id);
    return { artifacts: artifacts.map(artifactView), problems };
  });

  route(app, ROUTES.downloadArtifact, {}, async (req, reply) => {
    const name = artifactName(req.params['*']);
    const file = await o.artifacts.download(req.params.id, name, DOWNLOAD_URL_TTL_S);
    // In an S3 bucket: the client fetches the bytes from there, by a URL good for minutes that
    // no cache may keep (it is a credential of sorts); the digest travels with the redirect.
    if ('url' in file) {
      return reply.header('cache-control', 'no-store').header('x-artifact-sha256', file.record.sha256).redirect(file.url, 302);
    }
    return reply
      .type('application/octet-stream')
      .header('content-length', String(file.sizeBytes))
      .header('content-disposition', contentDisposition(name))
      .header('x-artifact-sha256', file.record.sha256)
      .send(file.stream);
  });
};

/** The artifact name of a request, or 400 naming what is wrong with it. */
function artifactName(raw: string): string {
  const problem = artifactNameProblem(raw);
  if (problem !== null) throw new ExpoError('API_BAD_REQUEST', `bad artifact name: ${problem}`);
  return raw;
}

const isStream = (body: unknown): body is Readable => typeof (body as Readable | undefined)?.pipe === 'function';
/** An upload that sent no body at all (no parser ran): an empty file. */
const emptyBody = (): Readable => Readable.from([]);

