/**
 * A stand-in for api.github.com: a real HTTP server on 127.0.0.1 serving the few routes the
 * controller calls, checking credentials as GitHub does, recording every request, and checking
 * every request body and every answer against GitHub's OpenAPI description (github-openapi.ts):
 * a mismatch is recorded in `mismatches` and answered 500, and tests assert there was none.
 *
 * Credentials: the configured token (any route but the App's; check runs refuse it, as GitHub
 * does for anything but an App); an App JWT (RS256, verified with the App's public key, `iat`
 * not in the future, at most 10 minutes long) for the App routes; installation tokens it minted,
 * honouring their repositories, permissions and expiry. Anonymous reads of `publicRepos` only.
 *
 * Faults: `failNext(n)` (the next n answers are 500), `rateLimitNext(resetInS)` (403 with
 * `x-ratelimit-remaining: 0`), `tooManyNext(retryAfterS)` (429 with `retry-after`), `hangNext()`
 * (no answer), `revokeTokens()` (installation tokens stop working).
 */
import { createVerify, randomBytes, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { checkRequest, checkResponse } from './github-openapi.ts';
import { checkRun, commitStatus, contentFile, directoryEntry, installation, isoSeconds } from './github-standin-answers.ts';

export type AuthKind = 'none' | 'token' | 'app-jwt' | 'installation' | 'invalid';

export interface RecordedRequest {
  method: string;
  /** The path as sent (encoded), without the query. */
  path: string;
  query: Record<string, string>;
  accept: string;
  body: unknown;
  auth: AuthKind;
  /** For an installation token: what it may do. */
  token?: { repositories: string[]; permissions: Record<string, string> };
}

interface Minted {
  installationId: number;
  repositories: string[];
  permissions: Record<string, string>;
  expiresAt: number;
}

type Fault = { kind: 'status'; status: number } | { kind: 'hang' } | { kind: 'rate-limit'; resetInS: number } | { kind: 'too-many'; retryAfterS: number };

export interface StandinOptions {
  /** A token accepted as `Authorization: Bearer` for every repository. */
  token?: string;
  /** A GitHub App: its id, public key, and its installations' repositories (`owner/name`). */
  app?: { appId: string; publicKey: KeyObject; installations: Record<number, string[]> };
  /** Repositories whose contents may be read without a credential. */
  publicRepos?: string[];
}

interface Route {
  method: string;
  /** GitHub's path template, as in the OpenAPI description. */
  spec: string;
  pattern: RegExp;
}

/** Every route the stand-in serves, by GitHub's template. */
export const STANDIN_ROUTES: readonly Route[] = [
  { method: 'GET', spec: '/repos/{owner}/{repo}/contents/{path}', pattern: /^\/repos\/([^/]+)\/([^/]+)\/contents\/(.+)$/ },
  { method: 'POST', spec: '/repos/{owner}/{repo}/statuses/{sha}', pattern: /^\/repos\/([^/]+)\/([^/]+)\/statuses\/([^/]+)$/ },
  { method: 'POST', spec: '/repos/{owner}/{repo}/check-runs', pattern: /^\/repos\/([^/]+)\/([^/]+)\/check-runs$/ },
  { method: 'PATCH', spec: '/repos/{owner}/{repo}/check-runs/{check_run_id}', pattern: /^\/repos\/([^/]+)\/([^/]+)\/check-runs\/(\d+)$/ },
  { method: 'GET', spec: '/repos/{owner}/{repo}/installation', pattern: /^\/repos\/([^/]+)\/([^/]+)\/installation$/ },
  { method: 'POST', spec: '/app/installations/{installation_id}/access_tokens', pattern: /^\/app\/installations\/(\d+)\/access_tokens$/ },
];

const DOCS = 'https://docs.github.com/rest';

class Refusal {
  readonly status: number;
  readonly message: string;
  constructor(status: number, message: string) {
    this.status = status;
    this.message = message;
  }
}

export class GithubStandin {
  readonly requests: RecordedRequest[] = [];
  /** Every request body or answer that did not match GitHub's OpenAPI description. */
  readonly mismatches: string[] = [];
  /** Commit statuses posted, in order. */
  readonly statuses: { repo: string; sha: string; body: Record<string, unknown> }[] = [];
  readonly checkRuns = new Map<number, { repo: string; body: Record<string, unknown> }>();
  /** How long minted installation tokens live, ms. Default one hour, as on GitHub. */
  tokenLifetimeMs = 60 * 60_000;
  /** Send raw file contents without `content-length` (chunked), as GitHub may. */
  chunkedRaw = false;
  private readonly files = new Map<string, string>();
  private readonly minted = new Map<string, Minted>();
  private readonly faults: Fault[] = [];
  private nextId = 1000;

  private readonly server: Server;
  readonly url: string;
  private readonly o: StandinOptions;

  private constructor(server: Server, url: string, options: StandinOptions) {
    this.server = server;
    this.url = url;
    this.o = options;
  }

  static async start(options: StandinOptions = {}): Promise<GithubStandin> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const standin = new GithubStandin(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`, options);
    server.on('request', (req, res) => void standin.handle(req, res));
    return standin;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** A file's content at a commit. */
  addFile(repo: string, sha: string, path: string, content: string): void {
    this.files.set(`${repo.toLowerCase()}\0${sha}\0${path}`, content);
  }

  failNext(n: number, status = 500): void {
    for (let i = 0; i < n; i++) this.faults.push({ kind: 'status', status });
  }

  rateLimitNext(resetInS: number): void {
    this.faults.push({ kind: 'rate-limit', resetInS });
  }

  tooManyNext(retryAfterS: number): void {
    this.faults.push({ kind: 'too-many', retryAfterS });
  }

  /** The next request gets no answer at all (until `stop`). */
  hangNext(): void {
    this.faults.push({ kind: 'hang' });
  }

  /** Every installation token minted so far stops working (revoked, or the App lost access). */
  revokeTokens(): void {
    for (const minted of this.minted.values()) minted.expiresAt = 0;
  }

  /** Tokens minted so far (values), for assertions about where they went. */
  mintedTokens(): string[] {
    return [...this.minted.keys()];
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    let body: unknown;
    let bodyProblem: string | null = null;
    if (raw !== '') {
      try {
        body = JSON.parse(raw);
      } catch {
        bodyProblem = 'the request body is not JSON';
      }
    }
    const route = STANDIN_ROUTES.find((r) => r.method === req.method && r.pattern.test(url.pathname));
    const recorded: RecordedRequest = {
      method: req.method ?? '',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      accept: req.headers.accept ?? '',
      body,
      auth: 'none',
    };
    this.requests.push(recorded);
    if (route === undefined) return this.answerError(res, null, 404, 'Not Found');
    const problems = bodyProblem ? [bodyProblem] : checkRequest(route.method, route.spec, body);
    if (problems.length > 0) {
      this.mismatches.push(...problems);
      return this.answerError(res, route, 500, 'stand-in: the request body does not match the OpenAPI description');
    }
    const fault = this.faults.shift();
    if (fault?.kind === 'hang') return;
    if (fault?.kind === 'status') return this.answerError(res, route, fault.status, 'Server Error');
    if (fault?.kind === 'rate-limit') {
      const reset = Math.floor(Date.now() / 1000) + fault.resetInS;
      return this.answerError(res, route, 403, 'API rate limit exceeded', { 'x-ratelimit-limit': '5000', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(reset) });
    }
    if (fault?.kind === 'too-many') return this.answerError(res, route, 429, 'You have exceeded a secondary rate limit', { 'retry-after': String(fault.retryAfterS) });
    const params = route.pattern.exec(url.pathname)!.slice(1).map((s) => decodeURIComponent(s));
    try {
      this.authenticate(req, recorded);
      const answer = this.serve(route, params, recorded, url);
      if (typeof answer.body === 'string') {
        const type = { 'content-type': 'application/vnd.github.raw+json; charset=utf-8' };
        if (!this.chunkedRaw) {
          res.writeHead(answer.status, { ...type, 'content-length': Buffer.byteLength(answer.body) });
          res.end(answer.body);
          return;
        }
        res.writeHead(answer.status, type);
        for (let i = 0; i < answer.body.length; i += 1024) res.write(answer.body.slice(i, i + 1024));
        res.end();
        return;
      }
      this.answerJson(res, route, answer.status, answer.body);
    } catch (err) {
      if (!(err instanceof Refusal)) throw err;
      this.answerError(res, route, err.status, err.message);
    }
  }

  private authenticate(req: IncomingMessage, r: RecordedRequest): void {
    const header = req.headers.authorization;
    if (header === undefined) return;
    const m = /^(?:Bearer|token) (\S+)$/.exec(header);
    const credential = m?.[1] ?? '';
    if (this.o.token !== undefined && credential === this.o.token) {
      r.auth = 'token';
      return;
    }
    const minted = this.minted.get(credential);
    if (minted !== undefined && minted.expiresAt > Date.now()) {
      r.auth = 'installation';
      r.token = { repositories: minted.repositories, permissions: minted.permissions };
      return;
    }
    if (this.o.app && credential.split('.').length === 3 && this.verifyJwt(credential)) {
      r.auth = 'app-jwt';
      return;
    }
    r.auth = 'invalid';
    throw new Refusal(401, 'Bad credentials');
  }

  private verifyJwt(jwt: string): boolean {
    const [header, payload, signature] = jwt.split('.') as [string, string, string];
    const verifier = createVerify('RSA-SHA256');
    verifier.update(`${header}.${payload}`);
    if (!verifier.verify(this.o.app!.publicKey, Buffer.from(signature, 'base64url'))) return false;
    const h = JSON.parse(Buffer.from(header, 'base64url').toString()) as { alg?: string };
    const p = JSON.parse(Buffer.from(payload, 'base64url').toString()) as { iat?: number; exp?: number; iss?: unknown };
    const nowS = Date.now() / 1000;
    return h.alg === 'RS256' && String(p.iss) === this.o.app!.appId && typeof p.iat === 'number' && typeof p.exp === 'number' && p.iat <= nowS + 60 && p.exp > nowS && p.exp - p.iat <= 600;
  }

  /** Whether the request's credential may do `permission` (`contents:read`…) on `repo`. */
  private allow(r: RecordedRequest, repo: string, permission: string, level: 'read' | 'write'): void {
    if (r.auth === 'token') return;
    if (r.auth === 'installation') {
      if (!r.token!.repositories.includes(repo.toLowerCase())) throw new Refusal(404, 'Not Found');
      const has = r.token!.permissions[permission];
      if (has === 'write' || has === level) return;
      throw new Refusal(403, 'Resource not accessible by integration');
    }
    if (r.auth === 'none' && level === 'read' && (this.o.publicRepos ?? []).some((p) => p.toLowerCase() === repo.toLowerCase())) return;
    if (r.auth === 'none') throw new Refusal(level === 'read' ? 404 : 401, level === 'read' ? 'Not Found' : 'Requires authentication');
    throw new Refusal(403, 'A JSON web token cannot be used to authenticate to this endpoint');
  }

  private serve(route: Route, p: string[], r: RecordedRequest, url: URL): { status: number; body: unknown } {
    const b = (r.body ?? {}) as Record<string, unknown>;
    switch (route.spec) {
      case '/repos/{owner}/{repo}/contents/{path}': {
        const repo = `${p[0]}/${p[1]}`;
        this.allow(r, repo, 'contents', 'read');
        const at = `${repo.toLowerCase()}\0${url.searchParams.get('ref') ?? 'main'}\0`;
        const content = this.files.get(`${at}${p[2]}`);
        if (content === undefined) {
          // A directory: GitHub lists it as JSON whatever media type was asked for.
          const under = [...this.files.keys()].filter((k) => k.startsWith(`${at}${p[2]}/`)).map((k) => k.slice(at.length + p[2]!.length + 1));
          if (under.length === 0) throw new Refusal(404, 'Not Found');
          const names = [...new Set(under.map((rest) => rest.split('/')[0]!))];
          return { status: 200, body: names.map((name) => directoryEntry(this.url, repo, `${p[2]}/${name}`, under.includes(name) ? 'file' : 'dir')) };
        }
        if (r.accept.includes('application/vnd.github.raw')) return { status: 200, body: content };
        return { status: 200, body: contentFile(this.url, repo, p[2]!, content) };
      }
      case '/repos/{owner}/{repo}/statuses/{sha}': {
        const repo = `${p[0]}/${p[1]}`;
        this.allow(r, repo, 'statuses', 'write');
        this.statuses.push({ repo, sha: p[2]!, body: b });
        const id = this.nextId++;
        return { status: 201, body: commitStatus(this.url, repo, p[2]!, id, b) };
      }
      case '/repos/{owner}/{repo}/check-runs': {
        const repo = `${p[0]}/${p[1]}`;
        if (r.auth === 'token') throw new Refusal(403, 'You must authenticate via a GitHub App.');
        this.allow(r, repo, 'checks', 'write');
        const id = this.nextId++;
        this.checkRuns.set(id, { repo, body: b });
        return { status: 201, body: checkRun(this.url, repo, id, b) };
      }
      case '/repos/{owner}/{repo}/check-runs/{check_run_id}': {
        const repo = `${p[0]}/${p[1]}`;
        if (r.auth === 'token') throw new Refusal(403, 'You must authenticate via a GitHub App.');
        this.allow(r, repo, 'checks', 'write');
        const run = this.checkRuns.get(Number(p[2]));
        if (run === undefined || run.repo.toLowerCase() !== repo.toLowerCase()) throw new Refusal(404, 'Not Found');
        run.body = { ...run.body, ...b };
        return { status: 200, body: checkRun(this.url, repo, Number(p[2]), run.body) };
      }
      case '/repos/{owner}/{repo}/installation': {
        if (r.auth !== 'app-jwt') throw new Refusal(401, 'A JSON web token could not be decoded');
        const repo = `${p[0]}/${p[1]}`.toLowerCase();
        const found = Object.entries(this.o.app!.installations).find(([, repos]) => repos.some((x) => x.toLowerCase() === repo));
        if (found === undefined) throw new Refusal(404, 'Not Found');
        return { status: 200, body: installation(this.url, Number(found[0]), Number(this.o.app!.appId)) };
      }
      case '/app/installations/{installation_id}/access_tokens': {
        if (r.auth !== 'app-jwt') throw new Refusal(401, 'A JSON web token could not be decoded');
        const id = Number(p[0]);
        const repos = this.o.app!.installations[id];
        if (repos === undefined) throw new Refusal(404, 'Not Found');
        const owners = repos.map((x) => x.toLowerCase());
        const wanted = ((b.repositories as string[] | undefined) ?? owners.map((x) => x.split('/')[1]!)).map((name) => owners.find((x) => x.split('/')[1] === name.toLowerCase()));
        if (wanted.some((x) => x === undefined)) throw new Refusal(422, 'There is at least one repository that does not exist or is not accessible to the parent installation.');
        const token = `ghs_${randomBytes(18).toString('base64url')}`;
        const permissions = (b.permissions as Record<string, string> | undefined) ?? { contents: 'write', statuses: 'write', checks: 'write', metadata: 'read' };
        const expiresAt = Date.now() + this.tokenLifetimeMs;
        this.minted.set(token, { installationId: id, repositories: wanted as string[], permissions, expiresAt });
        return { status: 201, body: { token, expires_at: isoSeconds(expiresAt), permissions, repository_selection: 'selected' } };
      }
      default:
        throw new Refusal(404, 'Not Found');
    }
  }

  private answerJson(res: ServerResponse, route: Route, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const problems = checkResponse(route.method, route.spec, status, body);
    if (problems.length > 0) {
      this.mismatches.push(...problems);
      status = 500;
      body = { message: 'stand-in: the answer does not match the OpenAPI description', documentation_url: DOCS };
    }
    const text = JSON.stringify(body);
    res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private answerError(res: ServerResponse, route: Route | null, status: number, message: string, headers: Record<string, string> = {}): void {
    const body = { message, documentation_url: DOCS, status: String(status) };
    if (route === null) {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify(body));
      return;
    }
    this.answerJson(res, route, status, body, headers);
  }
}
