/**
 * prom-client's default process metrics (CPU, memory, file descriptors, heap, event-loop lag,
 * GC) under a prefix, minus the three gauges it names `*_total` — `promtool check metrics`
 * rejects a non-counter with that suffix, and they add nothing the handle-free metrics lack.
 */
import { collectDefaultMetrics, type Registry } from './prom-lite.ts';

const MISNAMED = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export function collectProcessMetrics(registry: Registry, prefix: string): void {
  collectDefaultMetrics({ register: registry, prefix });
  for (const name of MISNAMED) registry.removeSingleMetric(`${prefix}${name}`);
}
