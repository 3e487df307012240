/**
 * The PostgreSQL adapter of the Store port (`--db postgres://…`): the same operations as the
 * SQLite one, each one statement or one transaction, on a `pg` pool (`pg-db.ts`), against the
 * schema of `pg-schema.ts`. The claim picks with `SELECT … FOR UPDATE SKIP LOCKED`, so two
 * controllers never hand one build to two workers. Users, sessions, tokens and the audit log are
 * in `pg-access.ts`.
 *
 * CONTRACT STUB: every method below is replaced by the real one (issue 14).
 */
import { ExpoError } from '../../protocol/errors.ts';
import { PgDb } from './pg-db.ts';
import { PgAccess } from './pg-access.ts';
import type { Store } from './store.ts';

export interface PgStoreOptions {
  /** `postgres://…` */
  url: string;
  /** Connections in the pool. Default 10. */
  poolMax?: number;
}

const notYet = (name: string): Promise<never> => Promise.reject(new ExpoError('STORE_FAILED', `PgStore.${name} is not implemented yet`));

export class PgStore implements Store {
  /** The pool, shared with the cluster (pg-cluster.ts) for its notifications. */
  readonly db: PgDb;
  readonly url: string;
  private readonly access: PgAccess;

  constructor(o: PgStoreOptions) {
    this.url = o.url;
    this.db = new PgDb({ url: o.url, ...(o.poolMax === undefined ? {} : { max: o.poolMax }) });
    this.access = new PgAccess(this.db);
  }

  migrate: Store['migrate'] = () => notYet('migrate');
  close: Store['close'] = () => this.db.close();
  diskError: Store['diskError'] = () => null;
  createWorker: Store['createWorker'] = () => notYet('createWorker');
  getWorker: Store['getWorker'] = () => notYet('getWorker');
  getWorkerByKeyHash: Store['getWorkerByKeyHash'] = () => notYet('getWorkerByKeyHash');
  listWorkers: Store['listWorkers'] = () => notYet('listWorkers');
  touchWorker: Store['touchWorker'] = () => notYet('touchWorker');
  markWorkerOffline: Store['markWorkerOffline'] = () => notYet('markWorkerOffline');
  findSilentWorkers: Store['findSilentWorkers'] = () => notYet('findSilentWorkers');
  createBuild: Store['createBuild'] = () => notYet('createBuild');
  getBuild: Store['getBuild'] = () => notYet('getBuild');
  listBuilds: Store['listBuilds'] = () => notYet('listBuilds');
  countBuildsByStatus: Store['countBuildsByStatus'] = () => notYet('countBuildsByStatus');
  countQueuedBuilds: Store['countQueuedBuilds'] = () => notYet('countQueuedBuilds');
  activeBuildsOfWorker: Store['activeBuildsOfWorker'] = () => notYet('activeBuildsOfWorker');
  activeBuildsByWorker: Store['activeBuildsByWorker'] = () => notYet('activeBuildsByWorker');
  findStaleBuilds: Store['findStaleBuilds'] = () => notYet('findStaleBuilds');
  findOverdueBuilds: Store['findOverdueBuilds'] = () => notYet('findOverdueBuilds');
  claimBuild: Store['claimBuild'] = () => notYet('claimBuild');
  getAttemptByLease: Store['getAttemptByLease'] = () => notYet('getAttemptByLease');
  getAttemptByTokenHash: Store['getAttemptByTokenHash'] = () => notYet('getAttemptByTokenHash');
  listAttempts: Store['listAttempts'] = () => notYet('listAttempts');
  hasAttemptOnWorker: Store['hasAttemptOnWorker'] = () => notYet('hasAttemptOnWorker');
  touchBuild: Store['touchBuild'] = () => notYet('touchBuild');
  setBuildPhase: Store['setBuildPhase'] = () => notYet('setBuildPhase');
  recordStepStart: Store['recordStepStart'] = () => notYet('recordStepStart');
  requestCancel: Store['requestCancel'] = () => notYet('requestCancel');
  cancelQueued: Store['cancelQueued'] = () => notYet('cancelQueued');
  unassign: Store['unassign'] = () => notYet('unassign');
  finishAttempt: Store['finishAttempt'] = () => notYet('finishAttempt');
  putArtifact: Store['putArtifact'] = () => notYet('putArtifact');
  setArtifactProblems: Store['setArtifactProblems'] = () => notYet('setArtifactProblems');
  listArtifacts: Store['listArtifacts'] = () => notYet('listArtifacts');
  findPrunableBuilds: Store['findPrunableBuilds'] = () => notYet('findPrunableBuilds');
  deleteBuilds: Store['deleteBuilds'] = () => notYet('deleteBuilds');
  recordDelivery: Store['recordDelivery'] = () => notYet('recordDelivery');
  listDeliveries: Store['listDeliveries'] = () => notYet('listDeliveries');
  listPendingDeliveries: Store['listPendingDeliveries'] = () => notYet('listPendingDeliveries');
  settleDelivery: Store['settleDelivery'] = () => notYet('settleDelivery');
  reopenDelivery: Store['reopenDelivery'] = () => notYet('reopenDelivery');
  createProject: Store['createProject'] = () => notYet('createProject');
  getProject: Store['getProject'] = () => notYet('getProject');
  getProjectByRepo: Store['getProjectByRepo'] = () => notYet('getProjectByRepo');
  listProjects: Store['listProjects'] = () => notYet('listProjects');
  deleteProject: Store['deleteProject'] = () => notYet('deleteProject');
  putProjectSecret: Store['putProjectSecret'] = () => notYet('putProjectSecret');
  deleteProjectSecret: Store['deleteProjectSecret'] = () => notYet('deleteProjectSecret');
  getProjectSecrets: Store['getProjectSecrets'] = () => notYet('getProjectSecrets');
  unfinishedBuildsOfRef: Store['unfinishedBuildsOfRef'] = () => notYet('unfinishedBuildsOfRef');
  listBuildsToReport: Store['listBuildsToReport'] = () => notYet('listBuildsToReport');
  setReported: Store['setReported'] = () => notYet('setReported');
  countDeliveriesBefore: Store['countDeliveriesBefore'] = () => notYet('countDeliveriesBefore');
  deleteDeliveriesBefore: Store['deleteDeliveriesBefore'] = () => notYet('deleteDeliveriesBefore');
  createUser: Store['createUser'] = (...a) => this.access.createUser(...a);
  getUser: Store['getUser'] = (...a) => this.access.getUser(...a);
  listUsers: Store['listUsers'] = (...a) => this.access.listUsers(...a);
  deleteUser: Store['deleteUser'] = (...a) => this.access.deleteUser(...a);
  setUserPassword: Store['setUserPassword'] = (...a) => this.access.setUserPassword(...a);
  setUserRole: Store['setUserRole'] = (...a) => this.access.setUserRole(...a);
  recordSignIn: Store['recordSignIn'] = (...a) => this.access.recordSignIn(...a);
  createSession: Store['createSession'] = (...a) => this.access.createSession(...a);
  getSession: Store['getSession'] = (...a) => this.access.getSession(...a);
  deleteSession: Store['deleteSession'] = (...a) => this.access.deleteSession(...a);
  deleteExpiredSessions: Store['deleteExpiredSessions'] = (...a) => this.access.deleteExpiredSessions(...a);
  deleteSessionsOfUser: Store['deleteSessionsOfUser'] = (...a) => this.access.deleteSessionsOfUser(...a);
  createApiToken: Store['createApiToken'] = (...a) => this.access.createApiToken(...a);
  getApiTokenBySecretHash: Store['getApiTokenBySecretHash'] = (...a) => this.access.getApiTokenBySecretHash(...a);
  getApiToken: Store['getApiToken'] = (...a) => this.access.getApiToken(...a);
  listApiTokens: Store['listApiTokens'] = (...a) => this.access.listApiTokens(...a);
  revokeApiToken: Store['revokeApiToken'] = (...a) => this.access.revokeApiToken(...a);
  touchApiToken: Store['touchApiToken'] = (...a) => this.access.touchApiToken(...a);
  appendAudit: Store['appendAudit'] = (...a) => this.access.appendAudit(...a);
  listAudit: Store['listAudit'] = (...a) => this.access.listAudit(...a);
  setWorkerDrainRequested: Store['setWorkerDrainRequested'] = (...a) => this.access.setWorkerDrainRequested(...a);
  deleteWorker: Store['deleteWorker'] = (...a) => this.access.deleteWorker(...a);
  listBuildsSince: Store['listBuildsSince'] = () => notYet('listBuildsSince');
  listAttemptsSince: Store['listAttemptsSince'] = () => notYet('listAttemptsSince');
  appendLog: Store['appendLog'] = () => notYet('appendLog');
  readLog: Store['readLog'] = () => notYet('readLog');
  readLogRange: Store['readLogRange'] = () => notYet('readLogRange');
}
