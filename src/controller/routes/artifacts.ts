/**
 * Artifacts: the agent uploads each collected file while its attempt is current (lease-fenced,
 * streamed to disk, capped); admins list and download them. An artifact's name is its path
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
  // An artifact is bytes whatever its Content-Type says (a JSON or text file is still a file):
  // for this plugin's routes only, every body — any type, or none named — reaches the route as
  // the raw stream, written to disk as it arrives. bodyLimit does not apply to a stream; the
  // route's own cap does.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  route(app, ROUTES.uploadArtifact, {}, async (req, reply) => {
    const worker = requireAnyWorker(req.principal);
    const name = artifactName(req.params['*']);
    // The lease travels in a header, not the URL: URLs end up in logs and error messages.
    const lease = req.headers['x-expo-lease'] as string;
    const { attempt } = await o.service.currentAttempt(worker, req.params.id, lease);
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > o.maxArtifactBytes) throw new ExpoError('API_BODY_TOO_LARGE', `artifact '${name}' is larger than the cap of ${o.maxArtifactBytes} bytes`);
    const body = isStream(req.body) ? req.body : emptyBody();
    let stored;
    try {
      stored = await o.files.write(req.params.id, attempt.attempt, name, body, o.maxArtifactBytes);
    } catch (err) {
      // Its folder removed under the upload: a build pruned (or ended) meanwhile answers for
      // itself (409 BUILD_OVER, 404…); for a build still current the folder's loss is ours (500).
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') await o.service.currentAttempt(worker, req.params.id, lease);
      throw err;
    }
    const { sizeBytes, sha256 } = stored;
    // The upload may have taken minutes: the attempt must still be current to record it.
    try {
      await o.service.currentAttempt(worker, req.params.id, lease);
    } catch (err) {
      await o.files.remove(req.params.id, attempt.attempt, name);
      throw err;
    }
    await o.store.putArtifact({ buildId: req.params.id, name, attempt: attempt.attempt, sizeBytes, sha256, createdAt: o.now() });
    req.log.info({ buildId: req.params.id, artifact: name, sizeBytes }, 'artifact stored');
    return reply.status(201).send({ name, attempt: attempt.attempt, sizeBytes, sha256 });
  });

  route(app, ROUTES.listArtifacts, {}, async (req) => {
    requireAdmin(req.principal);
    const build = await o.service.getBuild(req.params.id);
    return { artifacts: (await o.store.listArtifacts(req.params.id)).map(artifactView), problems: build.artifactProblems };
  });

  route(app, ROUTES.downloadArtifact, {}, async (req, reply) => {
    requireAdmin(req.principal);
    const name = artifactName(req.params['*']);
    await o.service.getBuild(req.params.id);
    const known = (await o.store.listArtifacts(req.params.id)).find((a) => a.name === name);
    const file = known ? await o.files.open(req.params.id, known.attempt, name) : null;
    if (!known || !file) throw new ExpoError('API_NOT_FOUND', `build ${req.params.id} has no artifact '${name}'`);
    return reply
      .type('application/octet-stream')
      .header('content-length', String(file.sizeBytes))
      .header('content-disposition', contentDisposition(name))
      .header('x-artifact-sha256', known.sha256)
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

/**
 * `attachment` with the base name: a plain ASCII fallback (anything else, quotes and
 * backslashes included, becomes `_`) and the exact name in RFC 8187's `filename*`.
 */
function contentDisposition(name: string): string {
  const base = name.slice(name.lastIndexOf('/') + 1);
  const ascii = base.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(base).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`;
}
