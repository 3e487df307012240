/**
 * Why a queued build waits: read from the enrolled workers at the moment of asking, so that a
 * build whose labels no worker has does not wait without a word. Matching is the dispatcher's
 * (the store's `claimBuild`): a worker matches when it has every label the build names.
 */
import type { WaitingView } from '../protocol/schemas.ts';
import type { BuildRecord, WorkerRecord } from './store/store.ts';
import { workerStatus } from './views.ts';

export interface WorkerLoad {
  worker: WorkerRecord;
  /** Builds the worker holds now (assigned, preparing or running). */
  runningBuilds: readonly string[];
}

const list = (xs: readonly string[]) => xs.join(', ');

/** Why `build` (queued) is not claimed yet, given every enrolled worker and what it holds. */
export function whyWaiting(build: Pick<BuildRecord, 'labels'>, workers: readonly WorkerLoad[]): WaitingView {
  const need = build.labels;
  const matching = workers.filter((w) => need.every((l) => w.worker.labels.includes(l)));
  if (matching.length === 0) {
    const message =
      workers.length === 0 ? 'no worker is enrolled: enrol one with POST /api/v1/workers and start its agent'
      : need.length === 0 ? 'no worker can take it'
      : `no enrolled worker has the label${need.length === 1 ? '' : 's'} ${list(need)}: enrol one with ${need.length === 1 ? 'it' : 'them'}, or submit with labels a worker has`;
    return { reason: 'no_worker_with_labels', message };
  }
  const names = (ws: readonly WorkerLoad[]) => list(ws.map((w) => w.worker.id));
  const byStatus = (s: string) => matching.filter((w) => workerStatus(w.worker, w.runningBuilds) === s);
  const online = matching.filter((w) => !['never_seen', 'offline', 'draining'].includes(workerStatus(w.worker, w.runningBuilds)));
  const free = online.filter((w) => w.runningBuilds.length < (w.worker.slotsTotal ?? 1));
  if (free.length > 0) return { reason: 'next_poll', message: `${names(free)} ha${free.length === 1 ? 's' : 've'} a free slot and takes it at its next poll, after any older queued build it matches` };
  if (online.length > 0) return { reason: 'all_matching_busy', message: `every matching worker is busy (${names(online)}): it runs when one frees a slot` };
  const draining = byStatus('draining');
  if (draining.length > 0) return { reason: 'matching_draining', message: `every matching worker that is up is draining (${names(draining)}): it runs when one comes back` };
  const offline = byStatus('offline');
  if (offline.length > 0) {
    const neverSeen = byStatus('never_seen');
    return { reason: 'matching_offline', message: `every matching worker is offline (${names(offline)})${neverSeen.length > 0 ? ` or has never connected (${names(neverSeen)})` : ''}: check its agent` };
  }
  return { reason: 'matching_never_seen', message: `no matching worker has connected yet (${names(matching)}): start its agent, and check its config's controllerUrl and apiKey` };
}
