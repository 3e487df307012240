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
 * - Failed sign-ins are counted per name and per address; past the limit, sign-in is refused
 *   with 429 AUTH_RATE_LIMITED before any password is hashed.
 * - Every action that changes the farm is appended to the audit log with who did it.
 *
 * (Skeleton of the contract: the access work fills in each method.)
 */
import type { AuditAction } from '../protocol/domain.ts';
import type { AuditList, CreatedToken, CreatedUser, CreateTokenBody, CreateUserBody, MeView, TokenView, UserView } from '../protocol/schemas.ts';
import type { Principal } from './auth.ts';
import type { SessionRecord, Store, UserRecord } from './store/store.ts';

/** The session cookie's name. */
export const SESSION_COOKIE = 'expo_session';

export interface AccessServiceOptions {
  store: Store;
  now: () => number;
  /** How long a dashboard session lasts, ms. Default 12 h. */
  sessionTtlMs?: number;
  /** scrypt's cost as log2 N (r = 8, p = 1). Default 17 (OWASP's minimum for scrypt); tests may lower it. */
  passwordCostLog2?: number;
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

  constructor(options: AccessServiceOptions) {
    this.o = options;
  }

  /** The principal of a request: its Bearer credential when it sends one, else its session cookie. AUTH_MISSING / AUTH_INVALID. */
  resolve(_authorization: string | undefined, _sessionCookie: string | undefined): Promise<Principal> {
    return notYet('resolve');
  }

  /** Who the caller is. */
  me(_p: Principal): MeView {
    throw new Error('AccessService.me is not written yet');
  }

  // ---- users (admin) ----
  createUser(_by: Principal, _body: CreateUserBody): Promise<CreatedUser> {
    return notYet('createUser');
  }
  listUsers(): Promise<UserView[]> {
    return notYet('listUsers');
  }
  deleteUser(_by: Principal, _name: string): Promise<void> {
    return notYet('deleteUser');
  }
  setPassword(_by: Principal, _name: string, _password: string | undefined): Promise<CreatedUser> {
    return notYet('setPassword');
  }
  revokeSessions(_by: Principal, _name: string): Promise<number> {
    return notYet('revokeSessions');
  }

  // ---- sign-in ----
  /** Checks the password (after the rate limit), makes a session. AUTH_INVALID for a wrong name or password (the same answer for both); AUTH_RATE_LIMITED with `details.retryAfterS`. */
  signIn(_name: string, _password: string, _ip: string): Promise<SignedIn> {
    return notYet('signIn');
  }
  /** Ends the caller's session (a no-op for other principals). */
  signOut(_p: Principal): Promise<void> {
    return notYet('signOut');
  }

  // ---- tokens ----
  /** A token for the caller (a session user: theirs; the admin key: no owner). AUTH_ROLE_TOO_HIGH above the caller's role; AUTH_FORBIDDEN for a token caller. */
  createToken(_by: Principal, _body: CreateTokenBody): Promise<CreatedToken> {
    return notYet('createToken');
  }
  /** An admin's: every token; anyone else's: their own. */
  listTokens(_by: Principal): Promise<TokenView[]> {
    return notYet('listTokens');
  }
  /** API_NOT_FOUND for a token that is not the caller's (unless admin). */
  revokeToken(_by: Principal, _id: string): Promise<void> {
    return notYet('revokeToken');
  }

  // ---- audit ----
  /** Appends an entry: `by` did `action` to `target`. Never throws for a failed write: logs it (the action itself already happened). */
  audit(_by: Principal | string, _action: AuditAction, _target: string, _detail?: string | null): Promise<void> {
    return notYet('audit');
  }
  listAudit(_q: { limit?: number; before?: number; action?: AuditAction }): Promise<AuditList> {
    return notYet('listAudit');
  }
}

/** The CSRF token of a session, derived from its secret (never stored). */
export function csrfTokenOf(_sessionSecret: string): string {
  throw new Error('csrfTokenOf is not written yet');
}

const notYet = (method: string): Promise<never> => Promise.reject(new Error(`AccessService.${method} is not written yet`));
