/**
 * GitHub App authentication: the App proves itself with a short JWT signed (RS256) with its
 * private key, finds the installation that covers a repository, and buys installation tokens
 * scoped to that one repository and to the fewest permissions the call needs.
 *
 * Tokens and their lifetimes:
 * - the JWT: `iat` 60 s in the past (GitHub's advice against clock drift), `exp` 9 minutes
 *   ahead (GitHub refuses more than 10); a fresh one for every App call, as it costs nothing;
 * - the controller's own token per repository (`statuses: write`, `checks: write`,
 *   `contents: read`): kept until 5 minutes before its `expires_at` (GitHub gives an hour), so a
 *   call never starts with a token about to lapse;
 * - a clone token (`contents: read` only): fresh for every build, never cached, because it
 *   leaves the controller (it travels to the worker).
 *
 * The installation id of a repository is cached; a refusal to mint a token (the App was
 * uninstalled or lost access) forgets it so the next call looks it up again.
 */
import { createSign, type KeyObject } from 'node:crypto';
import { ExpoError, isExpoError } from '../protocol/errors.ts';

/** One authenticated call to GitHub's API, as the client makes it (retries and errors included). */
export type GithubCall = (req: { method: 'GET' | 'POST'; path: string; credential: string; body?: unknown }) => Promise<unknown>;

/** The permissions of an installation token, by GitHub's names. */
export type TokenPermissions = Record<string, 'read' | 'write'>;

/** What the controller does with its own token: report statuses and check runs, read pipeline files. */
const CONTROLLER_PERMISSIONS: TokenPermissions = Object.freeze({ statuses: 'write', checks: 'write', contents: 'read' });
/** What a clone token may do: read the repository's contents, nothing else. */
const CLONE_PERMISSIONS: TokenPermissions = Object.freeze({ contents: 'read' });

/** The JWT's lifetime after `now` and its backdating, in seconds. */
const JWT_TTL_S = 9 * 60;
const JWT_BACKDATE_S = 60;
/** A cached token is replaced this long before GitHub says it expires. */
const TOKEN_REFRESH_MARGIN_MS = 5 * 60_000;

export interface AppAuthOptions {
  /** The App's id (digits) or client id (`Iv…`): the JWT's issuer. */
  appId: string;
  /** The App's RSA private key. */
  privateKey: KeyObject;
  call: GithubCall;
  /** Milliseconds since the epoch. */
  now: () => number;
}

export interface InstallationToken {
  token: string;
  /** Ms since the epoch. */
  expiresAt: number;
}

const base64url = (data: string | Buffer): string => Buffer.from(data).toString('base64url');

/** An App JWT (RS256) valid from 60 s before `nowMs` for 9 minutes. */
export function appJwt(appId: string, privateKey: KeyObject, nowMs: number): string {
  const nowS = Math.floor(nowMs / 1000);
  const header = base64url(JSON.stringify({ alg: 'RS256', typ: 'JWT' }));
  // The issuer: an App id as the number GitHub shows, a client id (`Iv…`) as it is.
  const iss = /^\d+$/.test(appId) ? Number(appId) : appId;
  const payload = base64url(JSON.stringify({ iat: nowS - JWT_BACKDATE_S, exp: nowS + JWT_TTL_S, iss }));
  const signer = createSign('RSA-SHA256');
  signer.update(`${header}.${payload}`);
  return `${header}.${payload}.${base64url(signer.sign(privateKey))}`;
}

export class AppAuth {
  private readonly o: AppAuthOptions;
  /** Installation id by repository (lower case: GitHub's names are case-insensitive). */
  private readonly installations = new Map<string, Promise<number>>();
  private readonly controllerTokens = new Map<string, Promise<InstallationToken>>();

  constructor(options: AppAuthOptions) {
    this.o = options;
  }

  jwt(): string {
    return appJwt(this.o.appId, this.o.privateKey, this.o.now());
  }

  /** The installation of the App that covers `repo` (`GET /repos/{owner}/{repo}/installation`), cached. */
  installationId(repo: string): Promise<number> {
    const key = repo.toLowerCase();
    let found = this.installations.get(key);
    if (found === undefined) {
      found = this.o.call({ method: 'GET', path: `/repos/${repoPath(repo)}/installation`, credential: this.jwt() }).then((body) => {
        const id = (body as { id?: unknown } | null)?.id;
        if (typeof id !== 'number') throw new ExpoError('GITHUB_STATUS', `GitHub answered the installation lookup of ${repo} without an id`, { details: { status: 200 } });
        return id;
      });
      this.installations.set(key, found);
      found.catch(() => this.installations.delete(key));
    }
    return found;
  }

  /** The controller's token for `repo`, reused until 5 minutes before it expires. */
  async controllerToken(repo: string): Promise<string> {
    const key = repo.toLowerCase();
    const cached = this.controllerTokens.get(key);
    if (cached !== undefined) {
      const token = await cached.catch(() => null);
      if (token !== null && token.expiresAt - TOKEN_REFRESH_MARGIN_MS > this.o.now()) return token.token;
      if (this.controllerTokens.get(key) === cached) this.controllerTokens.delete(key);
    }
    let next = this.controllerTokens.get(key);
    if (next === undefined) {
      next = this.mint(repo, CONTROLLER_PERMISSIONS);
      this.controllerTokens.set(key, next);
      next.catch(() => {
        if (this.controllerTokens.get(key) === next) this.controllerTokens.delete(key);
      });
    }
    return (await next).token;
  }

  /** Drops the cached token of `repo` (GitHub refused it: revoked, or the App lost access). */
  forget(repo: string): void {
    this.controllerTokens.delete(repo.toLowerCase());
    this.installations.delete(repo.toLowerCase());
  }

  /** A fresh token that can read `repo`'s contents and nothing else. */
  cloneToken(repo: string): Promise<InstallationToken> {
    return this.mint(repo, CLONE_PERMISSIONS);
  }

  /** `POST /app/installations/{id}/access_tokens` for one repository with `permissions`. */
  private async mint(repo: string, permissions: TokenPermissions): Promise<InstallationToken> {
    const id = await this.installationId(repo);
    const name = repo.slice(repo.indexOf('/') + 1);
    let body: unknown;
    try {
      body = await this.o.call({
        method: 'POST',
        path: `/app/installations/${id}/access_tokens`,
        credential: this.jwt(),
        body: { repositories: [name], permissions },
      });
    } catch (err) {
      // The installation may be gone or no longer cover the repository: look it up afresh next time.
      if (isExpoError(err, 'GITHUB_STATUS')) this.installations.delete(repo.toLowerCase());
      throw err;
    }
    const { token, expires_at: expiresAt } = (body ?? {}) as { token?: unknown; expires_at?: unknown };
    const expiresMs = typeof expiresAt === 'string' ? Date.parse(expiresAt) : NaN;
    if (typeof token !== 'string' || token === '' || !Number.isFinite(expiresMs)) throw new ExpoError('GITHUB_STATUS', `GitHub answered the token request for ${repo} without a token or its expiry`, { details: { status: 201 } });
    return { token, expiresAt: expiresMs };
  }
}

/** `owner/repo` for a URL path, each segment encoded (the caller has checked it with `isRepo`). */
export function repoPath(repo: string): string {
  return repo.split('/').map(encodeURIComponent).join('/');
}
