/**
 * The jobs that run on one controller at a time, the leader: the watchdog, the retention
 * schedule, the webhook delivery sweep (and its retries) and the GitHub reporter. `lead(true)`
 * starts them and `lead(false)` stops them; the cluster calls it as the lead comes and goes (a
 * lone controller leads from `startCluster` to `shutdown`). A stop is not awaited by `lead` (the
 * cluster's callback is synchronous); `idle` waits for the last one.
 *
 * What is not here runs on every controller: a webhook delivery is worked on by the controller
 * that accepted it, long polls and heartbeat waits by the controller that holds them.
 */
import type { Logger } from 'pino';
import type { GithubReporter } from './github-reporter.ts';
import type { ControllerMetrics } from './metrics.ts';
import type { Retention } from './retention.ts';
import type { Watchdog } from './watchdog.ts';
import type { WebhookService } from './webhook-service.ts';

export interface LeaderJobsOptions {
  watchdog: Pick<Watchdog, 'start' | 'stop'>;
  retention: Pick<Retention, 'start' | 'stop'>;
  webhooks: Pick<WebhookService, 'start' | 'pause'>;
  reporter: Pick<GithubReporter, 'start' | 'stop'>;
  metrics: Pick<ControllerMetrics, 'leader'>;
  logger: Logger;
  /** The retention schedule (cron). Default: none runs. */
  retentionSchedule?: string | undefined;
}

export class LeaderJobs {
  private readonly o: LeaderJobsOptions;
  private stopping: Promise<void> = Promise.resolve();

  constructor(options: LeaderJobsOptions) {
    this.o = options;
  }

  lead(leading: boolean): void {
    this.o.metrics.leader.set(leading ? 1 : 0);
    if (leading) {
      this.o.watchdog.start();
      if (this.o.retentionSchedule !== undefined) this.o.retention.start(this.o.retentionSchedule);
      this.o.webhooks.start();
      this.o.reporter.start();
      return;
    }
    this.o.webhooks.pause();
    // Each stop ends its timer at once; what it awaits is a sweep or pass already in flight.
    const stops = Promise.all([this.o.watchdog.stop(), this.o.retention.stop(), this.o.reporter.stop()]).then(
      () => undefined,
      (err: unknown) => this.o.logger.error({ err }, 'stopping the leader jobs failed'),
    );
    this.stopping = this.stopping.then(() => stops);
  }

  /** Resolves once every stop asked for so far is over. */
  async idle(): Promise<void> {
    await this.stopping;
  }
}
