/**
 * The access part of the store port (users, sessions, API tokens, audit, and workers from the
 * controller's side), kept in its own class by each adapter (`SqliteAccess`, `PgAccess`). Both
 * stores answer these methods by handing them to that class: the list and the delegation live
 * here once, so a new access method is added in one place and both stores get it.
 */
import type { Store } from './store.ts';

/** The names of the access methods, as the port declares them. */
export const ACCESS_METHODS = [
  'createUser',
  'getUser',
  'listUsers',
  'deleteUser',
  'setUserPassword',
  'setUserRole',
  'recordSignIn',
  'createSession',
  'getSession',
  'deleteSession',
  'deleteSessionsOfUser',
  'deleteExpiredSessions',
  'createApiToken',
  'getApiTokenBySecretHash',
  'getApiToken',
  'listApiTokens',
  'revokeApiToken',
  'touchApiToken',
  'appendAudit',
  'listAudit',
  'setWorkerDrainRequested',
  'deleteWorker',
] as const satisfies readonly (keyof Store)[];

/** The access methods of the port. */
export type AccessMethods = Pick<Store, (typeof ACCESS_METHODS)[number]>;

/** Makes `store` answer every access method by calling `access`'s (bound, so `this` is `access`). */
export function delegateAccess(store: AccessMethods, access: AccessMethods): void {
  const target = store as unknown as Record<string, unknown>;
  for (const name of ACCESS_METHODS) target[name] = (access[name] as (...a: unknown[]) => unknown).bind(access);
}
