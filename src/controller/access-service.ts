/**
 * People and scripts (docs/access.md): users with a role and a password, their dashboard
 * sessions, API tokens, and the audit log.
 *
 * - A **user** has a name, a role (`viewer` < `operator` < `admin`) and a scrypt password hash.
 * - A **session** is a cookie (`expo_session`) holding a 256-bit secret; only its SHA-256 is
 *   stored. It lasts `sessionTtlMs` (default 12 h) and ends at sign-out, at a password reset, when
 *   an admin revokes the user's sessions, or when the user is removed. Its CSRF token is derived
 *   from the secret (`csrfTokenOf`), so it is never stored and never valid for another session.
 * - An **API token** (`ewt_…`, 256-bit) is stored as its SHA-256; it acts with its own role
 *   capped by its owner's current role, until it expires (default 90 days) or is revoked.
 * - Sign-ins are counted per name and per address when they start (a good password takes its
 *   count back); past the limit, sign-in is refused with 429 AUTH_RATE_LIMITED before any
 *   password is hashed. At most a few passwords are hashed at once (`HashGate`).
 * - Managing users is for a person signed in or the admin key, never an API token. A token
 *   made with the admin key is bound to that key (`adminKeyEpoch`).
 * - Every action that changes the farm is appended to the audit log with who did it.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { lowerRole, roleAtLeast, USER_NAME_PATTERN, type AuditAction, type Role } from '../protocol/domain.ts';
import { ExpoError } from '../protocol/errors.ts';
import type { AuditList, CreatedToken, CreatedUser, CreateTokenBody, CreateUserBody, MeView, TokenView, UserView } from '../protocol/schemas.ts';
import { actorOf, adminKeyDigest, bearerToken, hashSecret, newBuildId, newSecret, roleOf, type Principal } from './auth.ts';
import { DEFAULT_PASSWORD_COST_LOG2, hashPassword, newPassword, unmatchableHash, verifyPassword } from './passwords.ts';
import { HashGate, type HashGateOptions } from './hash-gate.ts';
import { SignInLimit } from './sign-in-limit.ts';
import { BuildTokenCache } from './build-token-cache.ts';
import type { ApiTokenRecord, SessionRecord, Store, UserRecord } from './store/store.ts';

/** The session cookie's name. */
export const SESSION_COOKIE = 'expo_session';

const DAY_MS = 86_400_000;
/** A token's life when its creator names none. */
const DEFAULT_TOKEN_DAYS = 90;
/** A token's last use is written at most this often (not once per request). */
const TOKEN_TOUCH_MS = 60_000;
const AUDIT_DEFAULT_LIMIT = 50;
const AUDIT_MAX_LIMIT = 500;
const USER_NAME_RE = new RegExp(USER_NAME_PATTERN);
/** The audit target of a failed sign-in whose name could not be a user's. */
export const NOT_A_USER_NAME = '(not a user name)';

export interface AccessServiceOptions {
  store: Store;
  now: () => number;
  /** The controller's admin key (`--api-key`); none: no Bearer key counts as admin. */
  adminKey?: string;
  /** How long a dashboard session lasts, ms. Default 12 h. */
  sessionTtlMs?: number;
  /** scrypt's cost as log2 N (r = 8, p = 1). Default 17 (OWASP's minimum for scrypt); tests may lower it. */
  passwordCostLog2?: number;
  /** How many sign-in password checks run at once and wait (default 2 and 8). */
  hashing?: HashGateOptions;
  /** Where a failed audit write is reported. Default: nowhere. */
  logger?: Pick<Logger, 'error'>;
}

/** A signed-in session: the cookie's value (the secret, for `Set-Cookie` only) and what the page needs. */
export interface SignedIn {
  cookieValue: string;
  session: SessionRecord;
  user: UserRecord;
  csrfToken: string;
}

export class AccessService {
  readonly o: AccessServiceOptions;
  private readonly adminDigest: Buffer | null;
  /** The admin key's epoch (`adminKeyEpoch`), stamped on tokens it makes; null without a key. */
  private readonly adminEpoch: string | null;
  private readonly limit: SignInLimit;
  private readonly hashGate: HashGate;
  private readonly costLog2: number;
  /**
   * A stored hash of the current cost that no password matches (its key is random bytes, not a
   * hash of anything): checked for an unknown name, so its answer takes as long as a known one's.
   */
  private readonly dummyHash: string;
  /** Build tokens of running attempts, so a build heartbeat is one store statement (see build-token-cache.ts). */
  private readonly buildTokens = new BuildTokenCache();

  /** Drops a build token from the cache (its heartbeat was refused: the attempt is over or gone). */
  forgetBuildToken(tokenHash: string): void {
    this.buildTokens.forget(tokenHash);
  }

  constructor(options: AccessServiceOptions) {
    this.o = options;
    this.adminDigest = options.adminKey === undefined ? null : adminKeyDigest(options.adminKey);
    this.adminEpoch = this.adminDigest === null ? null : adminKeyEpoch(this.adminDigest);
    this.limit = new SignInLimit({ now: options.now });
    this.hashGate = new HashGate(options.hashing);
    this.costLog2 = options.passwordCostLog2 ?? DEFAULT_PASSWORD_COST_LOG2;
    this.dummyHash = unmatchableHash(this.costLog2);
  }

  /** The principal of a request: its Bearer credential when it sends one, else its session cookie. AUTH_MISSING / AUTH_INVALID. */
  async resolve(authorization: string | undefined, sessionCookie: string | undefined): Promise<Principal> {
    if (authorization !== undefined && authorization !== '') return this.resolveBearer(authorization);
    if (sessionCookie !== undefined && sessionCookie !== '') {
      const found = await this.o.store.getSession(hashSecret(sessionCookie), this.o.now());
      if (!found) throw new ExpoError('AUTH_INVALID', 'the session has expired or was ended: sign in again at /login');
      return { kind: 'session', session: found.session, user: found.user, csrfToken: csrfTokenOf(sessionCookie) };
    }
    throw new ExpoError('AUTH_MISSING', 'no credential: send "Authorization: Bearer <key>" or sign in at /login');
  }

  private async resolveBearer(header: string): Promise<Principal> {
    const secret = bearerToken(header);
    // One hash of the presented secret serves every check. Comparing digests takes the same
    // time whatever the lengths, and timingSafeEqual the same time wherever they differ.
    const hash = hashSecret(secret);
    const digest = Buffer.from(hash, 'hex');
    if (this.adminDigest !== null && timingSafeEqual(digest, this.adminDigest)) return { kind: 'admin' };
    const store = this.o.store;
    if (secret.startsWith('ewk_')) {
      const worker = await store.getWorkerByKeyHash(hash);
      if (worker) return { kind: 'worker', worker };
    } else if (secret.startsWith('ewb_')) {
      const known = this.buildTokens.get(hash);
      if (known) return { kind: 'build', attempt: known };
      const attempt = await store.getAttemptByTokenHash(hash);
      if (attempt) {
        this.buildTokens.remember(attempt);
        return { kind: 'build', attempt };
      }
    } else if (secret.startsWith('ewt_')) {
      const found = await store.getApiTokenBySecretHash(hash);
      if (found) return this.tokenPrincipal(found.token, found.owner);
    }
    throw new ExpoError('AUTH_INVALID', 'the key is not valid');
  }

  private async tokenPrincipal(token: ApiTokenRecord, owner: UserRecord | null): Promise<Principal> {
    const now = this.o.now();
    if (token.revokedAt !== null) throw new ExpoError('AUTH_INVALID', `the API token '${token.name}' was revoked`);
    if (token.expiresAt <= now) throw new ExpoError('AUTH_INVALID', `the API token '${token.name}' expired at ${iso(token.expiresAt)}`);
    // The store removes a user's tokens with the user; this guards a row left behind all the same.
    if (token.owner !== null && owner === null) throw new ExpoError('AUTH_INVALID', `the user who made the API token '${token.name}' was removed`);
    // A token made with the admin key lives only as long as that key: rotating the key (after a
    // leak, say) must end what the leaked key made, too.
    if (token.owner === null && (token.adminEpoch === null || token.adminEpoch !== this.adminEpoch)) {
      throw new ExpoError('AUTH_INVALID', `the API token '${token.name}' was made with an admin key that has since changed`);
    }
    if (token.lastUsedAt === null || now - token.lastUsedAt >= TOKEN_TOUCH_MS) await this.o.store.touchApiToken(token.id, now);
    return { kind: 'token', token, owner, role: owner === null ? token.role : lowerRole(token.role, owner.role) };
  }

  /** Who the caller is. */
  me(p: Principal): MeView {
    switch (p.kind) {
      case 'admin':
        return { kind: 'admin-key', name: null, role: 'admin' };
      case 'token':
        return { kind: 'token', name: p.token.name, role: p.role };
      case 'session':
        return { kind: 'user', name: p.user.name, role: p.user.role };
      default:
        throw new ExpoError('AUTH_FORBIDDEN', 'worker keys and build tokens have no role');
    }
  }

  // ---- users (admin) ----
  async createUser(by: Principal, body: CreateUserBody): Promise<CreatedUser> {
    noTokenManagesUsers(by);
    const made = body.password === undefined ? newPassword() : undefined;
    const passwordHash = await hashPassword(body.password ?? made!, this.costLog2);
    const user = await this.o.store.createUser({ name: body.name, role: body.role, passwordHash, createdAt: this.o.now() });
    await this.audit(by, 'user.add', user.name, `role ${user.role}`);
    return { user: userView(user), ...(made === undefined ? {} : { password: made }) };
  }

  async listUsers(): Promise<UserView[]> {
    return (await this.o.store.listUsers()).map(userView);
  }

  async deleteUser(by: Principal, name: string): Promise<void> {
    noTokenManagesUsers(by);
    if (!(await this.o.store.deleteUser(name))) throw noUser(name);
    await this.audit(by, 'user.remove', name);
  }

  /** A new password (made here when none is given); every session of the user ends. */
  async setPassword(by: Principal, name: string, password: string | undefined): Promise<CreatedUser> {
    noTokenManagesUsers(by);
    const made = password === undefined ? newPassword() : undefined;
    const passwordHash = await hashPassword(password ?? made!, this.costLog2);
    if (!(await this.o.store.setUserPassword(name, passwordHash))) throw noUser(name);
    const user = (await this.o.store.getUser(name)) ?? noUserThrow(name);
    await this.audit(by, 'user.password', name, made === undefined ? 'set' : 'generated');
    return { user: userView(user), ...(made === undefined ? {} : { password: made }) };
  }

  /** A new role for the user; a lower one ends their sessions (pages they have open must not keep the old rights). */
  async setRole(by: Principal, name: string, role: Role): Promise<UserView> {
    noTokenManagesUsers(by);
    const before = await this.o.store.setUserRole(name, role);
    if (before === null) throw noUser(name);
    const ended = roleAtLeast(role, before) ? 0 : await this.o.store.deleteSessionsOfUser(name);
    await this.audit(by, 'user.role', name, `${before} → ${role}${ended > 0 ? `, ${ended} session${ended === 1 ? '' : 's'} ended` : ''}`);
    return userView((await this.o.store.getUser(name)) ?? noUserThrow(name));
  }

  async revokeSessions(by: Principal, name: string): Promise<number> {
    noTokenManagesUsers(by);
    if (!(await this.o.store.getUser(name))) throw noUser(name);
    const n = await this.o.store.deleteSessionsOfUser(name);
    await this.audit(by, 'user.sessions_revoked', name, `${n} session${n === 1 ? '' : 's'}`);
    return n;
  }

  // ---- sign-in ----
  /** Checks the password (after the rate limit and the hashing gate), makes a session. AUTH_INVALID for a wrong name or password (the same answer for both); AUTH_RATE_LIMITED with `details.retryAfterS`. */
  async signIn(name: string, password: string, ip: string): Promise<SignedIn> {
    // Counted as a failure before anything is awaited: of N requests in flight at once, at most
    // the limit's worth reach the hash (#1 of the issue-13 review).
    const retryAfterS = this.limit.reserve(name, ip);
    if (retryAfterS > 0) {
      throw new ExpoError('AUTH_RATE_LIMITED', `too many failed sign-ins for this name or address: try again in ${retryAfterS} s`, { details: { retryAfterS } });
    }
    let user: UserRecord | null;
    let ok: boolean;
    try {
      user = await this.o.store.getUser(name);
      // An unknown name spends one scrypt too, so the time taken does not tell names apart.
      const stored = user?.passwordHash ?? this.dummyHash;
      ok = await this.hashGate.run(() => verifyPassword(password, stored));
    } catch (err) {
      // No password was checked (the gate was full, or the store failed): no guess to count.
      this.limit.cancelled(name, ip);
      throw err;
    }
    if (!user || !ok) {
      // The actor is fixed: what was typed in the name box is nobody's identity, and may be a
      // password typed in the wrong box, so it is kept only when it is a user name at all.
      const tried = USER_NAME_RE.test(name) ? name : NOT_A_USER_NAME;
      await this.audit('anonymous', 'session.signin_failed', tried, `name ${tried} from ${ip}`);
      throw new ExpoError('AUTH_INVALID', 'wrong name or password');
    }
    this.limit.succeeded(name, ip);
    const now = this.o.now();
    const cookieValue = newSecret('ews_', 32);
    const session: SessionRecord = { idHash: hashSecret(cookieValue), userName: user.name, createdAt: now, expiresAt: now + (this.o.sessionTtlMs ?? 12 * 3_600_000) };
    await this.o.store.createSession(session);
    await this.o.store.recordSignIn(user.name, now);
    const signedIn: UserRecord = { ...user, lastSignInAt: now };
    await this.audit(`user ${user.name}`, 'session.signin', user.name, `from ${ip}`);
    return { cookieValue, session, user: signedIn, csrfToken: csrfTokenOf(cookieValue) };
  }

  /** Ends the caller's session (a no-op for other principals). */
  async signOut(p: Principal): Promise<void> {
    if (p.kind !== 'session') return;
    await this.o.store.deleteSession(p.session.idHash);
    await this.audit(p, 'session.signout', p.user.name);
  }

  // ---- tokens ----
  /** A token for the caller (a session user: theirs; the admin key: no owner). AUTH_ROLE_TOO_HIGH above the caller's role; AUTH_FORBIDDEN for a token caller. */
  async createToken(by: Principal, body: CreateTokenBody): Promise<CreatedToken> {
    if (by.kind !== 'admin' && by.kind !== 'session') {
      throw new ExpoError('AUTH_FORBIDDEN', 'an API token cannot create tokens: sign in to the dashboard, or use the admin key');
    }
    const have = roleOf(by)!;
    if (!roleAtLeast(have, body.role)) throw new ExpoError('AUTH_ROLE_TOO_HIGH', `a token's role cannot be above its creator's (${have}): asked for ${body.role}`);
    const now = this.o.now();
    const secret = newSecret('ewt_', 32);
    const token: ApiTokenRecord = {
      id: `tok_${newBuildId()}`,
      name: body.name,
      role: body.role,
      owner: by.kind === 'session' ? by.user.name : null,
      secretHash: hashSecret(secret),
      createdAt: now,
      expiresAt: now + (body.expiresInDays ?? DEFAULT_TOKEN_DAYS) * DAY_MS,
      lastUsedAt: null,
      revokedAt: null,
      adminEpoch: by.kind === 'admin' ? this.adminEpoch : null,
    };
    await this.o.store.createApiToken(token);
    await this.audit(by, 'token.create', token.id, `${token.name}, role ${token.role}, expires ${iso(token.expiresAt)}`);
    return { token: tokenView(token, now), secret };
  }

  /** An admin's: every token; a signed-in user's: their own; a token's below admin: itself. */
  async listTokens(by: Principal): Promise<TokenView[]> {
    const now = this.o.now();
    const role = roleOf(by);
    if (role === 'admin') return (await this.o.store.listApiTokens()).map((t) => tokenView(t, now));
    if (by.kind === 'session') return (await this.o.store.listApiTokens(by.user.name)).map((t) => tokenView(t, now));
    // A token below admin sees itself only: a leaked CI token must not list (or revoke) its
    // owner's other tokens.
    if (by.kind === 'token') return [tokenView(by.token, now)];
    return [];
  }

  /** API_NOT_FOUND for a token that is not the caller's (unless admin). */
  async revokeToken(by: Principal, id: string): Promise<void> {
    const token = await this.o.store.getApiToken(id);
    if (!token || !mayManage(by, token)) throw new ExpoError('API_NOT_FOUND', `no API token '${id}'`);
    // Revoking one already revoked changes nothing and says so with the same 204, and no second
    // audit row (only the revocation that happened is recorded).
    if (await this.o.store.revokeApiToken(id, this.o.now())) await this.audit(by, 'token.revoke', id, token.name);
  }

  // ---- audit ----
  /** Appends an entry: `by` did `action` to `target`. Never throws for a failed write: logs it (the action itself already happened). */
  async audit(by: Principal | string, action: AuditAction, target: string, detail: string | null = null): Promise<void> {
    const actor = typeof by === 'string' ? by : actorOf(by);
    try {
      await this.o.store.appendAudit({ at: this.o.now(), actor, action, target, detail });
    } catch (err) {
      this.o.logger?.error({ err, action, target }, 'could not write the audit log');
    }
  }

  async listAudit(q: { limit?: number; before?: number; action?: AuditAction }): Promise<AuditList> {
    const limit = Math.min(Math.max(q.limit ?? AUDIT_DEFAULT_LIMIT, 1), AUDIT_MAX_LIMIT);
    // One more than asked says whether another page follows.
    const rows = await this.o.store.listAudit({ limit: limit + 1, beforeId: q.before, action: q.action });
    const page = rows.slice(0, limit);
    return {
      entries: page.map((e) => ({ id: e.id, at: iso(e.at), actor: e.actor, action: e.action, target: e.target, detail: e.detail })),
      nextBefore: rows.length > limit ? page.at(-1)!.id : null,
    };
  }
}

/**
 * Managing users is for a person signed in or the admin key, never an API token of any role: a
 * stolen admin token could otherwise add a user of its own (or reset its owner's password), sign
 * in as them and mint tokens, outliving its own revocation (#5 of the issue-13 review).
 */
function noTokenManagesUsers(by: Principal): void {
  if (by.kind === 'token') throw new ExpoError('AUTH_FORBIDDEN', 'managing users needs a person signed in or the admin key, not an API token');
}

/** Whether `by` may see and revoke `token`: an admin any; a signed-in user their own; a token below admin only itself. */
function mayManage(by: Principal, token: ApiTokenRecord): boolean {
  if (roleOf(by) === 'admin') return true;
  if (by.kind === 'session') return token.owner === by.user.name;
  if (by.kind === 'token') return by.token.id === token.id;
  return false;
}

/**
 * The epoch of an admin key: SHA-256 of `epoch:` and the key's digest (hex). Stored on the tokens
 * the key makes; it names the key without being a hash anyone could check a guessed key against
 * any faster than the digest itself.
 */
export const adminKeyEpoch = (digest: Buffer): string => createHash('sha256').update('epoch:').update(digest).digest('hex');

/** The CSRF token of a session, derived from its secret (never stored). */
export function csrfTokenOf(sessionSecret: string): string {
  return createHmac('sha256', sessionSecret).update('expo-worker csrf v1').digest('base64url');
}

/** Whether `presented` is the session's CSRF token, compared in constant time. */
export function csrfTokenMatches(expected: string, presented: unknown): boolean {
  if (typeof presented !== 'string') return false;
  // Digests of both: equal lengths for timingSafeEqual whatever was sent.
  return timingSafeEqual(Buffer.from(hashSecret(expected), 'hex'), Buffer.from(hashSecret(presented), 'hex'));
}

/** The options of the session cookie's `Set-Cookie` (for `reply.setCookie(SESSION_COOKIE, secret, …)`). */
export interface SessionCookie {
  name: typeof SESSION_COOKIE;
  value: string;
  options: { httpOnly: true; sameSite: 'lax'; path: '/'; secure: boolean; maxAge: number };
}

/**
 * The session cookie: HttpOnly (no script reads it), SameSite=Lax (no cross-site POST carries
 * it), Path=/, and Secure when the controller is reached over TLS (`secure`: the public URL is
 * https, or the request came over TLS). `maxAgeS` 0 clears it (sign-out).
 */
export function sessionCookie(secret: string, o: { secure: boolean; maxAgeS: number }): SessionCookie {
  return { name: SESSION_COOKIE, value: secret, options: { httpOnly: true, sameSite: 'lax', path: '/', secure: o.secure, maxAge: o.maxAgeS } };
}

/** Whether the session cookie is `Secure`: the controller's public URL is https, or the request (`req.protocol`) came over TLS. */
export const cookieMustBeSecure = (publicUrl: string | null | undefined, requestProtocol: string): boolean =>
  (publicUrl ?? '').toLowerCase().startsWith('https://') || requestProtocol === 'https';

export const userView = (u: UserRecord): UserView => ({ name: u.name, role: u.role, createdAt: iso(u.createdAt), lastSignInAt: u.lastSignInAt === null ? null : iso(u.lastSignInAt) });

export const tokenView = (t: ApiTokenRecord, now: number): TokenView => ({
  id: t.id,
  name: t.name,
  role: t.role as Role,
  owner: t.owner,
  createdAt: iso(t.createdAt),
  expiresAt: iso(t.expiresAt),
  lastUsedAt: t.lastUsedAt === null ? null : iso(t.lastUsedAt),
  revokedAt: t.revokedAt === null ? null : iso(t.revokedAt),
  state: t.revokedAt !== null ? 'revoked' : t.expiresAt <= now ? 'expired' : 'active',
});

const iso = (ms: number): string => new Date(ms).toISOString();
const noUser = (name: string): ExpoError => new ExpoError('API_NOT_FOUND', `no user '${name}'`);
const noUserThrow = (name: string): never => {
  throw noUser(name);
};
