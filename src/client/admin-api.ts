/**
 * The admin side of the HTTP API, for the people's commands: one request per call, no retries
 * (a person is watching), and errors that say what to fix — the URL that could not be reached,
 * a key the controller refused, a build that does not exist.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { request, type Dispatcher } from 'undici';
import { answerErrorCode, ExpoError, isExpoError, isRetryable } from '../protocol/errors.ts';
import { pathOf, ROUTES, type AnswerOf, type HttpMethod, type RouteSpec } from '../protocol/routes.ts';
import type { ArtifactProblem, ArtifactView, BuildView, CreateBuildBody, CreateProjectBody, ProjectView, PruneBody, PruneResult, WorkerView, DeliveryView } from '../protocol/schemas.ts';
import type { ClientConfig } from './config.ts';

export interface Health {
  status: string;
  activeJobs: number;
  maxConcurrent: number;
  queueStats: Record<string, number>;
}

/** What the key check says: the commands name the config sources a person can fix. */
const KEY_SOURCES = '--key, EXPO_WORKER_KEY or ~/.expo-worker/client.json';

export class AdminApi {
  protected readonly c: ClientConfig;
  private readonly timeoutMs: number;

  constructor(config: ClientConfig, options: { timeoutMs?: number } = {}) {
    this.c = config;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** The controller's URL, as configured (for messages). */
  get url(): string {
    return this.c.url;
  }

  private async send(method: HttpMethod, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Dispatcher.ResponseData> {
    try {
      return await request(`${this.c.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.c.key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
    } catch (cause) {
      const code = (cause as { code?: string }).code;
      const why =
        code === 'ECONNREFUSED' ? 'connection refused — is the controller running there, and is the URL right?'
        : code === 'ENOTFOUND' ? 'host not found'
        : (cause as Error).message;
      throw new ExpoError('HTTP_UNREACHABLE', `cannot reach the controller at ${this.c.url}: ${why}`, { cause, details: { url: this.c.url, path } });
    }
  }

  protected async call(method: HttpMethod, path: string, body?: unknown, what?: string): Promise<{ status: number; headers: Record<string, unknown>; data: Buffer }> {
    const res = await this.send(method, path, body);
    const data = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode < 400) return { status: res.statusCode, headers: res.headers, data };
    return this.refused(method, path, res.statusCode, data, what);
  }

  /** Throws the error an answer with an error status stands for, in words a person can act on. */
  private refused(method: HttpMethod, path: string, statusCode: number, data: Buffer, what?: string): never {
    let err: { code?: string; message?: string } = {};
    try {
      err = JSON.parse(data.toString('utf8')) as typeof err;
    } catch {
      // not JSON: a proxy's page, say
    }
    const details = { url: this.c.url, path, status: statusCode, code: err.code };
    // The error table says whether the same call may work later (a stopping controller, a full
    // disk, a proxy between): a person is told to try again rather than to fix something.
    const later = isRetryable(answerErrorCode(statusCode, err)) ? ' — this may work if tried again shortly' : '';
    if (statusCode === 401) {
      throw new ExpoError('HTTP_STATUS', `the controller at ${this.c.url} refused the key (401${err.code ? ` ${err.code}` : ''}${err.message ? `: ${err.message}` : ''}): check ${KEY_SOURCES}`, { details });
    }
    if (statusCode === 403) {
      // The controller's message names the role the call needs (a viewer token cannot cancel).
      throw new ExpoError('HTTP_STATUS', `the key may not do this (403 ${err.code ?? 'AUTH_FORBIDDEN'}${err.message ? `: ${err.message}` : ''}): use a key with the role it needs (${KEY_SOURCES})`, { details });
    }
    if (statusCode === 404 && what !== undefined) throw new ExpoError('HTTP_STATUS', `${what} not found at ${this.c.url}`, { details });
    throw new ExpoError('HTTP_STATUS', `${method} ${path}: ${statusCode} ${err.code ?? ''} ${err.message ?? data.toString('utf8').slice(0, 200)}`.replace(/\s+/g, ' ').trim() + later, { details });
  }

  /** A call whose answer is JSON, typed as the route table says. */
  protected async json<R extends RouteSpec>(route: R, path: string, body?: unknown, what?: string): Promise<AnswerOf<R>> {
    return JSON.parse((await this.call(route.method, path, body, what)).data.toString('utf8')) as AnswerOf<R>;
  }

  async workers(): Promise<WorkerView[]> {
    return (await this.json(ROUTES.listWorkers, pathOf(ROUTES.listWorkers, {}))).workers;
  }

  /** The newest builds first; `filter` narrows them to a GitHub repo (any case), full ref and commit. */
  async builds(limit: number, filter: { repo?: string; ref?: string; sha?: string } = {}): Promise<BuildView[]> {
    return (await this.json(ROUTES.listBuilds, pathOf(ROUTES.listBuilds, {}, { limit, ...filter }))).builds;
  }

  /** A new build of a finished one's work. */
  async rerun(id: string): Promise<BuildView> {
    return this.json(ROUTES.rerunBuild, pathOf(ROUTES.rerunBuild, { id }), undefined, `build '${id}'`);
  }

  async createProject(body: CreateProjectBody): Promise<ProjectView> {
    return this.json(ROUTES.createProject, pathOf(ROUTES.createProject, {}), body);
  }

  /** The recorded GitHub webhook deliveries, newest first, at most `limit`. */
  async deliveries(limit: number): Promise<DeliveryView[]> {
    return (await this.json(ROUTES.listDeliveries, pathOf(ROUTES.listDeliveries, {}, { limit }))).deliveries;
  }

  async projects(): Promise<ProjectView[]> {
    return (await this.json(ROUTES.listProjects, pathOf(ROUTES.listProjects, {}))).projects;
  }

  async deleteProject(id: string): Promise<void> {
    await this.call(ROUTES.deleteProject.method, pathOf(ROUTES.deleteProject, { id }), undefined, `project '${id}'`);
  }

  /** Sets a project secret; the value travels in the body only (never the URL). */
  async putProjectSecret(id: string, name: string, value: string): Promise<{ name: string; updatedAt: string }> {
    return this.json(ROUTES.putProjectSecret, pathOf(ROUTES.putProjectSecret, { id, name }), { value }, `project '${id}'`);
  }

  async deleteProjectSecret(id: string, name: string): Promise<void> {
    await this.call(ROUTES.deleteProjectSecret.method, pathOf(ROUTES.deleteProjectSecret, { id, name }), undefined, `secret ${name} of project '${id}'`);
  }

  async build(id: string): Promise<BuildView> {
    return this.json(ROUTES.getBuild, pathOf(ROUTES.getBuild, { id }), undefined, `build '${id}'`);
  }

  async submit(body: CreateBuildBody): Promise<BuildView> {
    return this.json(ROUTES.submitBuild, pathOf(ROUTES.submitBuild, {}), body);
  }

  async prune(body: PruneBody): Promise<PruneResult> {
    return this.json(ROUTES.prune, pathOf(ROUTES.prune, {}), body, 'prune');
  }

  async cancel(id: string): Promise<BuildView> {
    return this.json(ROUTES.cancelBuild, pathOf(ROUTES.cancelBuild, { id }), undefined, `build '${id}'`);
  }

  /**
   * Opens the build's live log stream (Server-Sent Events), from the start or, on a reconnect,
   * after `lastEventId`; resolves with its body once the controller answered 200. A dead
   * connection shows as the body failing after the client's timeout (the server pings well
   * within it).
   */
  async logStream(id: string, lastEventId?: string): Promise<AsyncIterable<Buffer> & { destroy: () => void }> {
    const path = pathOf(ROUTES.streamLog, { id });
    const res = await this.send(ROUTES.streamLog.method, path, undefined, { accept: 'text/event-stream', ...(lastEventId === undefined ? {} : { 'last-event-id': lastEventId }) });
    if (res.statusCode === 200) return res.body;
    return this.refused(ROUTES.streamLog.method, path, res.statusCode, Buffer.from(await res.body.arrayBuffer()), `build '${id}'`);
  }

  /** The build's log from byte `offset` to its end, as stored so far. */
  async logs(id: string, offset: number): Promise<Buffer> {
    return (await this.call(ROUTES.readLog.method, pathOf(ROUTES.readLog, { id }, { offset }), undefined, `build '${id}'`)).data;
  }

  /** `/health` needs no key; the status command shows the queue from it. */
  /** The collected artifacts and the declared ones that were not stored (none from a controller that predates them). */
  async artifacts(id: string): Promise<{ artifacts: ArtifactView[]; problems: ArtifactProblem[] }> {
    // A controller that predates `problems` answers without it.
    const r: { artifacts: ArtifactView[]; problems?: ArtifactProblem[] } = await this.json(ROUTES.listArtifacts, pathOf(ROUTES.listArtifacts, { id }), undefined, `build ${id}`);
    return { artifacts: r.artifacts, problems: r.problems ?? [] };
  }

  /** Streams one artifact into `path` (via a temporary file), checking its SHA-256 on the way. */
  async downloadArtifact(id: string, artifact: ArtifactView, path: string): Promise<void> {
    let res;
    try {
      res = await request(`${this.c.url}${pathOf(ROUTES.downloadArtifact, { id, '*': artifact.name })}`, {
        method: ROUTES.downloadArtifact.method,
        headers: { authorization: `Bearer ${this.c.key}` },
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
    } catch (cause) {
      throw new ExpoError('HTTP_UNREACHABLE', `cannot reach the controller at ${this.c.url}: ${(cause as Error).message}`, { cause });
    }
    // A controller keeping artifacts in S3 answers 302 to a presigned URL: one redirect is
    // followed, to whatever host it names, WITHOUT our key (the URL carries its own signature,
    // and the key is not the storage's business).
    if (res.statusCode === 302) {
      const location = res.headers.location;
      await res.body.dump();
      if (typeof location !== 'string') throw new ExpoError('HTTP_STATUS', `artifact ${artifact.name} of build ${id}: 302 without a Location`, { details: { status: 302 } });
      let target: URL;
      try {
        target = new URL(location, this.c.url);
      } catch {
        throw new ExpoError('HTTP_STATUS', `artifact ${artifact.name} of build ${id}: 302 to an unusable Location`, { details: { status: 302 } });
      }
      if (target.protocol !== 'https:' && target.protocol !== 'http:') throw new ExpoError('HTTP_STATUS', `artifact ${artifact.name} of build ${id}: 302 to a ${target.protocol} URL`, { details: { status: 302 } });
      try {
        res = await request(target, { method: 'GET', headersTimeout: this.timeoutMs, bodyTimeout: this.timeoutMs });
      } catch (cause) {
        // The URL is a credential for a few minutes: its host only, never the whole of it.
        throw new ExpoError('HTTP_UNREACHABLE', `cannot reach the artifact storage at ${target.host}: ${(cause as Error).message}`, { cause });
      }
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new ExpoError('HTTP_STATUS', `artifact ${artifact.name} of build ${id}: the storage at ${target.host} answered ${res.statusCode}`, { details: { status: res.statusCode } });
      }
    }
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new ExpoError('HTTP_STATUS', `artifact ${artifact.name} of build ${id}: ${res.statusCode}`, { details: { status: res.statusCode } });
    }
    // A name of our own, created anew (`wx`): nothing already there — a planted symlink, another
    // artifact, a file of the user's — is followed or removed.
    const temp = `${path}.${randomBytes(6).toString('hex')}.partial`;
    const hash = createHash('sha256');
    res.body.on('data', (chunk: Buffer) => hash.update(chunk));
    try {
      await pipeline(res.body, createWriteStream(temp, { flags: 'wx' }));
      const got = hash.digest('hex');
      if (got !== artifact.sha256) throw new ExpoError('HTTP_STATUS', `artifact ${artifact.name} arrived damaged: sha256 ${got}, expected ${artifact.sha256}`);
      await rename(temp, path);
    } catch (err) {
      res.body.destroy();
      await rm(temp, { force: true });
      // The connection failing mid-body is the controller out of reach, not a file-system error here.
      if (!isExpoError(err) && typeof (err as NodeJS.ErrnoException).syscall !== 'string') {
        throw new ExpoError('HTTP_UNREACHABLE', `artifact ${artifact.name} of build ${id}: the download broke off: ${(err as Error).message}`, { cause: err });
      }
      throw err;
    }
  }

  async health(): Promise<Health> {
    return this.json(ROUTES.health, pathOf(ROUTES.health, {}));
  }
}
