/**
 * The enrolled workers as the admin sees them: enrol one (its key is made here, shown once and
 * stored as a digest), list them, read one — each with the builds it holds now. A worker's
 * liveness (polls, heartbeats) is the build service's; marking it offline is the watchdog's.
 */
import { ExpoError } from '../protocol/errors.ts';
import type { WorkerView } from '../protocol/schemas.ts';
import { hashSecret, newWorkerKey } from './auth.ts';
import type { Store, WorkerRecord } from './store/store.ts';
import { workerView } from './views.ts';
import type { WorkerLoad } from './waiting.ts';

/** What the worker service reads and writes. */
export type WorkerStore = Pick<Store, 'createWorker' | 'getWorker' | 'listWorkers' | 'activeBuildsOfWorker' | 'activeBuildsByWorker'>;

export interface WorkerServiceOptions {
  store: WorkerStore;
  /** The time source, in ms since the epoch. */
  now: () => number;
}

export class WorkerService {
  private readonly o: WorkerServiceOptions;

  constructor(options: WorkerServiceOptions) {
    this.o = options;
  }

  /** Enrols a worker; `apiKey` is its plain key, which nothing keeps. 409 WORKER_EXISTS for a taken id. */
  async enrol(id: string, labels: string[]): Promise<{ worker: WorkerRecord; apiKey: string }> {
    const apiKey = newWorkerKey();
    const worker = await this.o.store.createWorker({ id, labels, keyHash: hashSecret(apiKey), createdAt: this.o.now() });
    return { worker, apiKey };
  }

  /** Every enrolled worker with the builds it holds, in id order. */
  async loads(): Promise<WorkerLoad[]> {
    const [workers, held] = await Promise.all([this.o.store.listWorkers(), this.o.store.activeBuildsByWorker()]);
    return workers.map((worker) => ({ worker, runningBuilds: (held.get(worker.id) ?? []).map((b) => b.id) }));
  }

  async list(): Promise<WorkerView[]> {
    return (await this.loads()).map((l) => workerView(l.worker, [...l.runningBuilds]));
  }

  /** One worker as the API shows it; 404 when there is none by that id. */
  async view(id: string): Promise<WorkerView> {
    const w = await this.o.store.getWorker(id);
    if (!w) throw new ExpoError('API_NOT_FOUND', `no worker '${id}'`);
    return workerView(w, (await this.o.store.activeBuildsOfWorker(id)).map((b) => b.id));
  }

  // ---- from the controller's side (issue 13: the access work fills these in) ----

  /** Hands the worker no new build until resumed (its running builds go on). API_NOT_FOUND. */
  drain(_id: string): Promise<WorkerView> {
    return Promise.reject(new Error('WorkerService.drain is not written yet'));
  }

  /** Undoes `drain`. API_NOT_FOUND. */
  resume(_id: string): Promise<WorkerView> {
    return Promise.reject(new Error('WorkerService.resume is not written yet'));
  }

  /** Removes the worker (its key stops working). API_NOT_FOUND; WORKER_BUSY while it holds active builds. */
  remove(_id: string): Promise<void> {
    return Promise.reject(new Error('WorkerService.remove is not written yet'));
  }
}
