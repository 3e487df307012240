/**
 * The enrolled workers as the admin sees them: enrol one (its key is made here, shown once and
 * stored as a digest), list them, read one — each with the builds it holds now; drain one (it
 * takes no new build; its running builds go on), resume it, remove it once it holds nothing. A worker's
 * liveness (polls, heartbeats) is the build service's; marking it offline is the watchdog's.
 */
import { ExpoError } from '../protocol/errors.ts';
import type { WorkerView } from '../protocol/schemas.ts';
import { hashSecret, newWorkerKey } from './auth.ts';
import type { Store, WorkerRecord } from './store/store.ts';
import { workerView } from './views.ts';
import type { WorkerLoad } from './waiting.ts';

/** What the worker service reads and writes. */
export type WorkerStore = Pick<Store, 'createWorker' | 'getWorker' | 'listWorkers' | 'activeBuildsOfWorker' | 'activeBuildsByWorker' | 'setWorkerDrainRequested' | 'deleteWorker'>;

export interface WorkerServiceOptions {
  store: WorkerStore;
  /** The time source, in ms since the epoch. */
  now: () => number;
  /** Lets waiting polls try again (a resumed worker may be inside one). Default: nothing. */
  wake?: () => void;
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

  // ---- from the controller's side ----

  /** Hands the worker no new build until resumed (its running builds go on). API_NOT_FOUND. */
  async drain(id: string): Promise<WorkerView> {
    if (!(await this.o.store.setWorkerDrainRequested(id, true))) throw noWorker(id);
    return this.view(id);
  }

  /** Undoes `drain`. API_NOT_FOUND. */
  async resume(id: string): Promise<WorkerView> {
    if (!(await this.o.store.setWorkerDrainRequested(id, false))) throw noWorker(id);
    this.o.wake?.();
    return this.view(id);
  }

  /** Removes the worker (its key stops working). API_NOT_FOUND; WORKER_BUSY while it holds active builds. */
  async remove(id: string): Promise<void> {
    const outcome = await this.o.store.deleteWorker(id);
    switch (outcome) {
      case 'removed':
        return;
      case 'missing':
        throw noWorker(id);
      case 'busy':
        throw new ExpoError('WORKER_BUSY', `worker '${id}' holds active builds: drain it and wait for them to end (or cancel them), then remove it`);
      default: {
        const never: never = outcome;
        throw new Error(`unknown outcome ${String(never)}`);
      }
    }
  }
}

const noWorker = (id: string): ExpoError => new ExpoError('API_NOT_FOUND', `no worker '${id}'`);
