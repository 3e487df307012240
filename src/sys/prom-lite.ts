/**
 * The parts of prom-client the agent uses — Registry, Counter, Gauge, Histogram and the default
 * process metrics — `require`d from their own files rather than through the package's index.
 * prom-client's `index.js` also loads its Pushgateway (`node:http`, `node:https` with TLS,
 * `node:zlib`, `node:url`), Summary (tdigest, bintrees) and AggregatorRegistry (`node:cluster`),
 * which the idle agent paid for and never used (docs/benchmarks.md, Agent: the agent's memory
 * by module). prom-client 15 has no `exports` map, so its `lib/` files can be required directly.
 *
 * These are the very classes `import … from 'prom-client'` gives: `index.js` re-exports
 * `require('./lib/registry')` and the rest, and Node caches a CommonJS module by its file, so a
 * process that loads both ways (the controller imports the package and shares
 * sys/process-metrics.ts) has one Registry class, and `instanceof` and registry merging hold.
 */
import { createRequire } from 'node:module';
import type * as Prom from 'prom-client';

const require = createRequire(import.meta.url);

/** prom-client's `Registry` (`lib/registry.js`). */
export const Registry = require('prom-client/lib/registry.js') as typeof Prom.Registry;
export type Registry = Prom.Registry;

/** prom-client's `Counter` (`lib/counter.js`). */
export const Counter = require('prom-client/lib/counter.js') as typeof Prom.Counter;
export type Counter<T extends string = string> = Prom.Counter<T>;

/** prom-client's `Gauge` (`lib/gauge.js`). */
export const Gauge = require('prom-client/lib/gauge.js') as typeof Prom.Gauge;
export type Gauge<T extends string = string> = Prom.Gauge<T>;

/** prom-client's `Histogram` (`lib/histogram.js`). */
export const Histogram = require('prom-client/lib/histogram.js') as typeof Prom.Histogram;
export type Histogram<T extends string = string> = Prom.Histogram<T>;

/** One of prom-client's default metrics (`lib/metrics/<name>.js`): registers its series on `registry`. */
type DefaultMetric = (registry: Registry, config: { prefix: string; eventLoopMonitoringPrecision: number }) => void;

/**
 * prom-client's default metrics in `lib/defaultMetrics.js`'s order — but the CPU counters, which
 * {@link processCpuTotal} gives instead. processResources only where Node has
 * `process.getActiveResourcesInfo`, as there. A test holds this list to prom-client's own
 * `collectDefaultMetrics` (same series, types and help), so an upgrade that adds one shows.
 */
const DEFAULT_METRICS = [
  'processStartTime',
  'osMemoryHeap',
  'processOpenFileDescriptors',
  'processMaxFileDescriptors',
  'eventLoopLag',
  ...(typeof process.getActiveResourcesInfo === 'function' ? ['processResources'] : []),
  'processHandles',
  'processRequests',
  'heapSizeAndUsed',
  'heapSpacesSizeAndUsed',
  'version',
  'gc',
];

/**
 * `process_cpu_user_seconds_total`, `process_cpu_system_seconds_total` and
 * `process_cpu_seconds_total`, as prom-client's `lib/metrics/processCpuTotal.js` makes them (same
 * names, help and values) without its trace exemplars: that file requires @opentelemetry/api
 * for them, ~1.4 MB of the idle agent's RSS for a feature it does not use.
 */
function processCpuTotal(registry: Registry, prefix: string): void {
  let last = process.cpuUsage();
  const user = new Counter({
    name: `${prefix}process_cpu_user_seconds_total`,
    help: 'Total user CPU time spent in seconds.',
    registers: [registry],
    // One collect sets all three, as prom-client does.
    collect() {
      const now = process.cpuUsage();
      const userS = (now.user - last.user) / 1e6;
      const systemS = (now.system - last.system) / 1e6;
      last = now;
      user.inc(userS);
      system.inc(systemS);
      total.inc(userS + systemS);
    },
  });
  const system = new Counter({ name: `${prefix}process_cpu_system_seconds_total`, help: 'Total system CPU time spent in seconds.', registers: [registry] });
  const total = new Counter({ name: `${prefix}process_cpu_seconds_total`, help: 'Total user and system CPU time spent in seconds.', registers: [registry] });
}

/**
 * prom-client's default process metrics (CPU, memory, file descriptors, heap, event-loop lag, GC,
 * Node version) on `register`, names prefixed: what its `collectDefaultMetrics({ register,
 * prefix })` registers, in the same order, without exemplars or extra labels.
 */
export function collectDefaultMetrics(config: { register: Registry; prefix?: string }): void {
  const prefix = config.prefix ?? '';
  processCpuTotal(config.register, prefix);
  for (const name of DEFAULT_METRICS) {
    const metric = require(`prom-client/lib/metrics/${name}.js`) as DefaultMetric;
    metric(config.register, { prefix, eventLoopMonitoringPrecision: 10 });
  }
}
