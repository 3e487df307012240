/**
 * The PostgreSQL adapter's share of access (docs/access.md): users, their sessions and API tokens,
 * the audit log, and the controller's side of workers (drain, remove). `PgStore` delegates these
 * port methods here; each is one statement or one transaction on the store's pool.
 *
 * CONTRACT STUB: every method below is replaced by the real one (issue 14).
 */
import { ExpoError } from '../../protocol/errors.ts';
import type { PgDb } from './pg-db.ts';
import type { Store } from './store.ts';

const notYet = (name: string): Promise<never> => Promise.reject(new ExpoError('STORE_FAILED', `PgAccess.${name} is not implemented yet`));

/** The access methods of the port (the same set `SqliteAccess` implements). */
export type AccessMethods = Pick<Store, 'createUser' | 'getUser' | 'listUsers' | 'deleteUser' | 'setUserPassword' | 'recordSignIn' | 'createSession' | 'getSession' | 'deleteSession' | 'deleteSessionsOfUser' | 'deleteExpiredSessions' | 'setUserRole' | 'createApiToken' | 'getApiTokenBySecretHash' | 'getApiToken' | 'listApiTokens' | 'revokeApiToken' | 'touchApiToken' | 'appendAudit' | 'listAudit' | 'setWorkerDrainRequested' | 'deleteWorker'>;

export class PgAccess implements AccessMethods {
  private readonly db: PgDb;

  constructor(db: PgDb) {
    this.db = db;
  }

  createUser: Store['createUser'] = () => notYet('createUser');
  getUser: Store['getUser'] = () => notYet('getUser');
  listUsers: Store['listUsers'] = () => notYet('listUsers');
  deleteUser: Store['deleteUser'] = () => notYet('deleteUser');
  setUserPassword: Store['setUserPassword'] = () => notYet('setUserPassword');
  recordSignIn: Store['recordSignIn'] = () => notYet('recordSignIn');
  createSession: Store['createSession'] = () => notYet('createSession');
  getSession: Store['getSession'] = () => notYet('getSession');
  deleteSession: Store['deleteSession'] = () => notYet('deleteSession');
  deleteSessionsOfUser: Store['deleteSessionsOfUser'] = () => notYet('deleteSessionsOfUser');
  deleteExpiredSessions: Store['deleteExpiredSessions'] = () => notYet('deleteExpiredSessions');
  setUserRole: Store['setUserRole'] = () => notYet('setUserRole');
  createApiToken: Store['createApiToken'] = () => notYet('createApiToken');
  getApiTokenBySecretHash: Store['getApiTokenBySecretHash'] = () => notYet('getApiTokenBySecretHash');
  getApiToken: Store['getApiToken'] = () => notYet('getApiToken');
  listApiTokens: Store['listApiTokens'] = () => notYet('listApiTokens');
  revokeApiToken: Store['revokeApiToken'] = () => notYet('revokeApiToken');
  touchApiToken: Store['touchApiToken'] = () => notYet('touchApiToken');
  appendAudit: Store['appendAudit'] = () => notYet('appendAudit');
  listAudit: Store['listAudit'] = () => notYet('listAudit');
  setWorkerDrainRequested: Store['setWorkerDrainRequested'] = () => notYet('setWorkerDrainRequested');
  deleteWorker: Store['deleteWorker'] = () => notYet('deleteWorker');
}
