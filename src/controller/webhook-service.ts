/**
 * GitHub webhook deliveries, once their signature holds: each is recorded once (a redelivery
 * of the same `X-GitHub-Delivery` is a duplicate and changes nothing) with what became of it.
 *
 * What becomes of it today: nothing is built. There is no project registry yet (issue 12 items
 * 2-7: projects, the pipeline file, checkout, statuses), so every delivery is recorded
 * `ignored` with the reason, and logged at info. When projects exist, this is where a delivery
 * is matched to one and turns into a build.
 */
import type { Logger } from 'pino';
import type { DeliveryRecord, Store } from './store/store.ts';

export type WebhookStore = Pick<Store, 'recordDelivery' | 'listDeliveries'>;

/** A verified delivery: its headers, and what its payload says about itself. */
export interface VerifiedDelivery {
  id: string;
  event: string;
  action: string | null;
  repository: string | null;
}

export interface WebhookServiceOptions {
  store: WebhookStore;
  now: () => number;
  logger: Logger;
}

export class WebhookService {
  private readonly o: WebhookServiceOptions;

  constructor(options: WebhookServiceOptions) {
    this.o = options;
  }

  /** Records the delivery; `duplicate` when its id was already recorded (then nothing is written or logged at info). */
  async accept(d: VerifiedDelivery): Promise<{ duplicate: boolean; record: DeliveryRecord }> {
    const reason = d.repository === null ? 'no repository in the payload' : `no project for ${d.repository}`;
    const record: DeliveryRecord = { ...d, receivedAt: this.o.now(), outcome: 'ignored', reason, work: null, builds: [] };
    const isNew = await this.o.store.recordDelivery(record);
    if (isNew) this.o.logger.info({ delivery: d.id, event: d.event, action: d.action, repository: d.repository, outcome: record.outcome }, `webhook delivery ignored: ${reason}`);
    else this.o.logger.debug({ delivery: d.id, event: d.event }, 'webhook redelivery: already recorded');
    return { duplicate: !isNew, record };
  }

  /** The newest recorded deliveries first, at most `limit`. */
  async list(limit: number): Promise<DeliveryRecord[]> {
    return this.o.store.listDeliveries(limit);
  }
}
