/**
 * The GitHub REST client behind the `GithubApi` port (api.ts says what each call means): undici
 * for HTTP, p-retry for GitHub's transient answers, the rate-limit headers honoured, and App
 * authentication from app-auth.ts.
 *
 * One call's path: credential (none, the configured token, or the App's installation token for
 * the repository) → request bounded by `requestTimeoutMs` → on a network error or 5xx, retried
 * with backoff (`retries` times) → on a rate limit (429, or 403 with `x-ratelimit-remaining: 0`
 * or `retry-after`) slept through when the wait is at most `maxRateLimitWaitMs`, else
 * `GITHUB_UNREACHABLE` with `details.retryAfterMs` at once → any other 4xx is `GITHUB_STATUS`
 * with `details.status`. Credentials travel only in the `Authorization` header; errors and log
 * lines carry the method, the path and GitHub's message, never a header.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import pRetry from 'p-retry';
import { request } from 'undici';
import { isRepo } from '../protocol/domain.ts';
import { ExpoError, isExpoError } from '../protocol/errors.ts';
import { SystemClock, type Clock } from '../sys/clock.ts';
import { AppAuth, repoPath } from './app-auth.ts';
import type { CheckRunOutput, CheckRunUpdate, CloneToken, CommitStatus, GithubApi, NewCheckRun } from './api.ts';

export const DEFAULT_GITHUB_API_URL = 'https://api.github.com';
const API_VERSION = '2022-11-28';
/** Answers other than a file's content are small; more than this is not GitHub talking. */
const MAX_ANSWER_BYTES = 1024 * 1024;
const DESCRIPTION_MAX = 140;
const TITLE_MAX = 255;
const TEXT_MAX = 65_535;

export interface GithubClientOptions {
  /** The API's base URL. Default `https://api.github.com` (GitHub Enterprise: `https://HOST/api/v3`). */
  apiUrl?: string;
  /** A token sent as `Authorization: Bearer`. Exclusive with `app`. */
  token?: string | null;
  /** A GitHub App: its id (or client id) and RSA private key. Exclusive with `token`. */
  app?: { appId: string; privateKey: KeyObject } | null;
  /** Bound on one request, headers and body, in ms. Default 30 000. */
  requestTimeoutMs?: number;
  /** Retries after a network error or 5xx. Default 3. */
  retries?: number;
  /** First and longest backoff between retries, ms. Defaults 1 000 and 10 000. */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** The longest rate-limit wait slept through inside a call, ms; a longer one fails the call with `retryAfterMs`. Default 10 000. */
  maxRateLimitWaitMs?: number;
  clock?: Pick<Clock, 'now' | 'sleep'>;
  /** Told of retries and rate limits (method, path, status: never a credential). */
  logger?: { warn(obj: object, msg: string): void };
}

interface Call {
  method: 'GET' | 'POST' | 'PATCH';
  path: string;
  credential: string | null;
  body?: unknown;
  accept?: string;
  /** Refuse an answer larger than this unread (`details.tooLarge`). */
  maxBytes?: number;
  /** Answer null on 404 instead of failing. */
  allow404?: boolean;
  /** The repository whose installation token `credential` is (App mode): forgotten on a 401. */
  repo?: string;
}

/** GitHub's answer to a rate-limited request: its status and the wait it asks for. */
class RateLimited {
  readonly status: number;
  readonly waitMs: number;
  constructor(status: number, waitMs: number) {
    this.status = status;
    this.waitMs = waitMs;
  }
}

interface Answer {
  status: number;
  contentType: string;
  text: string;
}

export class GithubClient implements GithubApi {
  readonly mode: 'none' | 'token' | 'app';
  private readonly o: Required<Omit<GithubClientOptions, 'token' | 'app' | 'logger'>> & Pick<GithubClientOptions, 'logger'>;
  private readonly token: string | null;
  private readonly app: AppAuth | null;

  constructor(options: GithubClientOptions = {}) {
    if (options.token && options.app) throw new TypeError('GithubClient: token and app are exclusive');
    this.o = {
      apiUrl: (options.apiUrl ?? DEFAULT_GITHUB_API_URL).replace(/\/+$/, ''),
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
      retries: options.retries ?? 3,
      retryMinMs: options.retryMinMs ?? 1000,
      retryMaxMs: options.retryMaxMs ?? 10_000,
      maxRateLimitWaitMs: options.maxRateLimitWaitMs ?? 10_000,
      clock: options.clock ?? new SystemClock(),
      logger: options.logger,
    };
    this.token = options.token ?? null;
    this.app = options.app
      ? new AppAuth({
          appId: options.app.appId,
          privateKey: options.app.privateKey,
          now: () => this.o.clock.now(),
          call: async (req) => jsonOf(req, (await this.call(req))!),
        })
      : null;
    this.mode = this.app ? 'app' : this.token ? 'token' : 'none';
  }

  async getFile(repo: string, path: string, ref: string, maxBytes: number): Promise<string | null> {
    checkRepo(repo);
    const segments = path.split('/');
    if (path === '' || segments.some((s) => s === '' || s === '.' || s === '..')) throw invalid(`not a file path in a repository: '${path}'`);
    if (ref === '') throw invalid('the ref of a file must not be empty');
    const answer = await this.call({
      method: 'GET',
      path: `/repos/${repoPath(repo)}/contents/${segments.map(encodeURIComponent).join('/')}?ref=${encodeURIComponent(ref)}`,
      repo,
      credential: await this.credential(repo),
      accept: 'application/vnd.github.raw+json',
      maxBytes,
      allow404: true,
    });
    // A directory answers with its JSON listing even when raw is asked for: no file there.
    if (answer === null || answer.contentType.startsWith('application/json')) return null;
    return answer.text;
  }

  async createStatus(repo: string, sha: string, status: CommitStatus): Promise<void> {
    checkRepo(repo);
    if (this.mode === 'none') throw unsupported('commit statuses need a token or a GitHub App');
    await this.call({
      method: 'POST',
      path: `/repos/${repoPath(repo)}/statuses/${encodeURIComponent(sha)}`,
      repo,
      credential: await this.credential(repo),
      body: {
        state: status.state,
        context: status.context,
        description: cutEnd(status.description, DESCRIPTION_MAX),
        ...(status.targetUrl === null ? {} : { target_url: status.targetUrl }),
      },
    });
  }

  async createCheckRun(repo: string, run: NewCheckRun): Promise<number> {
    checkRepo(repo);
    if (this.mode !== 'app') throw unsupported('check runs need a GitHub App');
    const answer = await this.call({
      method: 'POST',
      path: `/repos/${repoPath(repo)}/check-runs`,
      repo,
      credential: await this.credential(repo),
      body: {
        name: run.name,
        head_sha: run.headSha,
        status: run.status,
        external_id: run.externalId,
        ...(run.conclusion === undefined ? {} : { conclusion: run.conclusion }),
        ...(run.detailsUrl === null ? {} : { details_url: run.detailsUrl }),
        ...(run.output === undefined ? {} : { output: outputOf(run.output) }),
      },
    });
    const id = (jsonOf({ method: 'POST', path: `/repos/${repo}/check-runs` }, answer!) as { id?: unknown } | null)?.id;
    if (typeof id !== 'number') throw new ExpoError('GITHUB_STATUS', `POST /repos/${repo}/check-runs: GitHub answered without a check run id`, { details: { status: answer!.status } });
    return id;
  }

  async updateCheckRun(repo: string, id: number, update: CheckRunUpdate): Promise<void> {
    checkRepo(repo);
    if (this.mode !== 'app') throw unsupported('check runs need a GitHub App');
    if (!Number.isSafeInteger(id) || id <= 0) throw invalid(`not a check run id: ${id}`);
    await this.call({
      method: 'PATCH',
      path: `/repos/${repoPath(repo)}/check-runs/${id}`,
      repo,
      credential: await this.credential(repo),
      body: {
        status: update.status,
        ...(update.conclusion === undefined ? {} : { conclusion: update.conclusion }),
        ...(update.output === undefined ? {} : { output: outputOf(update.output) }),
        ...(update.detailsUrl === undefined || update.detailsUrl === null ? {} : { details_url: update.detailsUrl }),
      },
    });
  }

  async cloneToken(repo: string): Promise<CloneToken> {
    checkRepo(repo);
    if (this.app) return this.app.cloneToken(repo);
    return { token: this.token, expiresAt: null };
  }

  private async credential(repo: string): Promise<string | null> {
    if (this.app) return this.app.controllerToken(repo);
    return this.token;
  }

  /** One call, retried on network errors and 5xx; null for an allowed 404. */
  private async call(c: Call): Promise<Answer | null> {
    try {
      return await this.retried(c);
    } catch (err) {
      // A refused installation token is not used again: the next call buys a new one.
      if (c.repo !== undefined && this.app && isExpoError(err, 'GITHUB_STATUS') && err.details.status === 401) this.app.forget(c.repo);
      throw err;
    }
  }

  private async retried(c: Call): Promise<Answer | null> {
    return pRetry(() => this.rateLimited(c), {
      retries: this.o.retries,
      factor: 2,
      minTimeout: this.o.retryMinMs,
      maxTimeout: this.o.retryMaxMs,
      randomize: true,
      // A rate limit too long to sleep through is the caller's to wait out, not ours.
      shouldRetry: ({ error }) => isExpoError(error, 'GITHUB_UNREACHABLE') && error.details.retryAfterMs === undefined,
      onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
        if (retriesLeft > 0 && isExpoError(error, 'GITHUB_UNREACHABLE') && error.details.retryAfterMs === undefined) {
          this.o.logger?.warn({ method: c.method, path: pathOnly(c.path), status: error.details.status, attempt: attemptNumber }, `GitHub call failed, retrying: ${error.message}`);
        }
      },
    });
  }

  /** One attempt, sleeping through rate limits no longer than `maxRateLimitWaitMs` (at most twice). */
  private async rateLimited(c: Call): Promise<Answer | null> {
    for (let waits = 0; ; waits++) {
      const answer = await this.once(c);
      if (!(answer instanceof RateLimited)) return answer;
      const where = { method: c.method, path: pathOnly(c.path) };
      if (answer.waitMs > this.o.maxRateLimitWaitMs || waits >= 2) {
        throw new ExpoError('GITHUB_UNREACHABLE', `${c.method} ${where.path}: GitHub is rate-limiting (${answer.status}); try again in ${Math.ceil(answer.waitMs / 1000)} s`, {
          details: { ...where, status: answer.status, retryAfterMs: answer.waitMs },
        });
      }
      this.o.logger?.warn({ ...where, status: answer.status, waitMs: answer.waitMs }, 'GitHub is rate-limiting: waiting');
      await this.o.clock.sleep(answer.waitMs);
    }
  }

  /** One request: its answer, null for an allowed 404, or how long to wait when rate-limited. */
  private async once(c: Call): Promise<Answer | null | RateLimited> {
    const headers: Record<string, string> = {
      accept: c.accept ?? 'application/vnd.github+json',
      'user-agent': 'expo-worker',
      'x-github-api-version': API_VERSION,
    };
    if (c.credential !== null) headers.authorization = `Bearer ${c.credential}`;
    if (c.body !== undefined) headers['content-type'] = 'application/json';
    const where = `${c.method} ${pathOnly(c.path)}`;
    const signal = AbortSignal.timeout(this.o.requestTimeoutMs);
    let status: number;
    let contentType: string;
    let text: string;
    let resHeaders: Record<string, string | string[] | undefined>;
    try {
      const res = await request(`${this.o.apiUrl}${c.path}`, {
        method: c.method,
        headers,
        body: c.body === undefined ? undefined : JSON.stringify(c.body),
        headersTimeout: this.o.requestTimeoutMs,
        bodyTimeout: this.o.requestTimeoutMs,
        signal,
      });
      // Cutting a body short (too large) makes undici emit an abort on it: that is ours, not news.
      res.body.on('error', () => {});
      status = res.statusCode;
      resHeaders = res.headers;
      contentType = String(res.headers['content-type'] ?? '');
      const limit = status < 300 && c.maxBytes !== undefined ? c.maxBytes : MAX_ANSWER_BYTES;
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > limit) {
        res.body.destroy();
        throw tooLarge(where, status, limit);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > limit) {
          res.body.destroy();
          throw tooLarge(where, status, limit);
        }
        chunks.push(chunk);
      }
      text = Buffer.concat(chunks).toString('utf8');
    } catch (cause) {
      if (isExpoError(cause)) throw cause;
      throw new ExpoError('GITHUB_UNREACHABLE', `${where}: GitHub could not be reached: ${(cause as Error).message}`, { cause, details: { method: c.method, path: pathOnly(c.path) } });
    }
    if (status < 300) return { status, contentType, text };
    if (status === 404 && c.allow404) return null;
    const waitMs = rateLimitWaitMs(status, resHeaders, this.o.clock.now());
    if (waitMs !== null) return new RateLimited(status, waitMs);
    const message = githubMessage(text);
    const details = { method: c.method, path: pathOnly(c.path), status };
    if (status >= 500) throw new ExpoError('GITHUB_UNREACHABLE', `${where}: GitHub answered ${status} ${message}`.trim(), { details });
    throw new ExpoError('GITHUB_STATUS', `${where}: GitHub refused with ${status} ${message}`.trim(), { details });
  }
}

/** The wait a rate-limited answer asks for, ms, or null when the answer is not a rate limit. */
function rateLimitWaitMs(status: number, headers: Record<string, string | string[] | undefined>, nowMs: number): number | null {
  if (status !== 429 && status !== 403) return null;
  const retryAfter = Number(headers['retry-after']);
  if (headers['retry-after'] !== undefined && Number.isFinite(retryAfter) && retryAfter >= 0) return retryAfter * 1000;
  if (headers['x-ratelimit-remaining'] === '0') {
    const reset = Number(headers['x-ratelimit-reset']);
    if (Number.isFinite(reset)) return Math.max(0, reset * 1000 - nowMs);
  }
  // GitHub's advice for a 429 that names no time: wait a minute.
  return status === 429 ? 60_000 : null;
}

/** A success answer's JSON; one that is not JSON is not GitHub talking. */
function jsonOf(c: { method: string; path: string }, answer: Answer): unknown {
  try {
    return JSON.parse(answer.text) as unknown;
  } catch (cause) {
    throw new ExpoError('GITHUB_STATUS', `${c.method} ${pathOnly(c.path)}: GitHub answered ${answer.status} with a body that is not JSON`, { cause, details: { status: answer.status } });
  }
}

function githubMessage(text: string): string {
  try {
    const message = (JSON.parse(text) as { message?: unknown }).message;
    return typeof message === 'string' ? message.slice(0, 300) : '';
  } catch {
    return '';
  }
}

/** The path without its query (a ref is no secret, but keeps log lines short). */
const pathOnly = (path: string): string => path.split('?')[0]!;

const tooLarge = (where: string, status: number, limit: number): ExpoError =>
  new ExpoError('GITHUB_STATUS', `${where}: the answer is larger than ${limit} bytes`, { details: { status, tooLarge: true } });

const invalid = (message: string): ExpoError => new ExpoError('GITHUB_STATUS', message, { details: { status: 0, invalid: true } });
const unsupported = (message: string): ExpoError => new ExpoError('GITHUB_STATUS', message, { details: { status: 0, unsupported: true } });

function checkRepo(repo: string): void {
  if (!isRepo(repo)) throw invalid(`not a GitHub repository name (owner/name): '${repo.slice(0, 200)}'`);
}

/** At most `max` characters (code points), the end replaced by `…` when cut. */
function cutEnd(s: string, max: number): string {
  const chars = Array.from(s);
  return chars.length <= max ? s : chars.slice(0, max - 1).join('') + '…';
}

/** At most `max` characters, keeping the end (a log's tail says why a build failed). */
function keepEnd(s: string, max: number): string {
  const chars = Array.from(s);
  return chars.length <= max ? s : '…' + chars.slice(chars.length - max + 1).join('');
}

function outputOf(o: CheckRunOutput): { title: string; summary: string; text?: string } {
  return { title: cutEnd(o.title, TITLE_MAX), summary: keepEnd(o.summary, TEXT_MAX), ...(o.text === undefined ? {} : { text: keepEnd(o.text, TEXT_MAX) }) };
}

/** What the factory needs of the controller's configuration. */
export interface GithubApiConfig {
  githubApiUrl: string;
  githubToken: string | null;
  githubAppId: string | null;
  /** The App's private key, PEM. */
  githubPrivateKey: string | null;
}

/** The controller's GitHub API from its configuration (credentials checked there), with tuning for tests. */
export function createGithubApi(config: GithubApiConfig, options: Omit<GithubClientOptions, 'apiUrl' | 'token' | 'app'> = {}): GithubApi {
  const app = config.githubAppId !== null && config.githubPrivateKey !== null ? { appId: config.githubAppId, privateKey: createPrivateKey(config.githubPrivateKey) } : null;
  return new GithubClient({ ...options, apiUrl: config.githubApiUrl, token: config.githubToken, app });
}
