/**
 * sys/prom-lite.ts: prom-client's metric classes required from their own files, and its default
 * metrics without the package's index. They must be the very classes the index exports (the
 * controller imports the package and shares sys/process-metrics.ts), the default metrics must
 * read as prom-client's own, and loading them must leave out what the index and the CPU metric's
 * exemplars pull in.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as prom from 'prom-client';
import { describe, expect, it } from 'vitest';
import * as lite from '../../../src/sys/prom-lite.ts';
import { collectProcessMetrics } from '../../../src/sys/process-metrics.ts';

/** The `# HELP` and `# TYPE` lines: every family's name, type and help, in order. */
const families = (text: string) => text.split('\n').filter((l) => l.startsWith('# '));

describe('prom-lite', () => {
  it("gives the classes prom-client's index exports, so registries and metrics mix across the two import paths", async () => {
    expect(lite.Registry).toBe(prom.Registry);
    expect(lite.Counter).toBe(prom.Counter);
    expect(lite.Gauge).toBe(prom.Gauge);
    expect(lite.Histogram).toBe(prom.Histogram);

    const fromLite = new lite.Registry();
    const fromIndex = new prom.Registry();
    const c = new lite.Counter({ name: 'lite_total', help: 'From prom-lite.', registers: [fromIndex] });
    new prom.Gauge({ name: 'index_value', help: 'From the index.', registers: [fromLite] });
    c.inc(2);
    expect(fromLite).toBeInstanceOf(prom.Registry);
    expect(fromIndex.getSingleMetric('lite_total')).toBeInstanceOf(prom.Counter);
    const merged = prom.Registry.merge([fromLite, fromIndex]);
    expect(await merged.metrics()).toMatch(/^lite_total 2$/m);
    expect(await merged.metrics()).toMatch(/^index_value 0$/m);
  });

  it("registers the same default metrics as prom-client's collectDefaultMetrics: names, types, help, order", async () => {
    const ours = new lite.Registry();
    const theirs = new prom.Registry();
    lite.collectDefaultMetrics({ register: ours, prefix: 'p_' });
    prom.collectDefaultMetrics({ register: theirs, prefix: 'p_' });
    const expected = families(await theirs.metrics());
    expect(expected.length).toBeGreaterThan(20);
    expect(families(await ours.metrics())).toEqual(expected);
  });

  it('counts CPU time as prom-client does: user + system = total, growing with work', async () => {
    const r = new lite.Registry();
    lite.collectDefaultMetrics({ register: r });
    const read = async () => {
      const text = await r.metrics();
      const v = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
      return { user: v('process_cpu_user_seconds_total'), system: v('process_cpu_system_seconds_total'), total: v('process_cpu_seconds_total') };
    };
    const first = await read();
    const until = process.cpuUsage().user + 50_000;
    while (process.cpuUsage().user < until); // 50 ms of user CPU
    const second = await read();
    expect(second.user).toBeGreaterThanOrEqual(first.user + 0.05);
    expect(second.total).toBeCloseTo(second.user + second.system, 9);
  });

  it("the agent's process metrics leave out the misnamed *_total gauges, as before", async () => {
    const r = new lite.Registry();
    collectProcessMetrics(r, 'a_');
    const text = await r.metrics();
    expect(text).toContain('# TYPE a_process_cpu_seconds_total counter');
    expect(text).not.toMatch(/a_nodejs_active_(handles|requests|resources)_total/);
  });

  it("loads neither prom-client's index (Pushgateway: https, TLS, zlib) nor @opentelemetry/api", () => {
    const src = fileURLToPath(new URL('../../../src/sys/process-metrics.ts', import.meta.url));
    const script = `
      const { Registry } = await import(${JSON.stringify(new URL('../../../src/sys/prom-lite.ts', import.meta.url).href)});
      const { collectProcessMetrics } = await import(${JSON.stringify(`file://${src}`)});
      const r = new Registry();
      collectProcessMetrics(r, 'x_');
      await r.metrics();
      const { createRequire } = await import('node:module');
      const loaded = Object.keys(createRequire(import.meta.url).cache);
      console.log(JSON.stringify({ loaded, builtins: process.moduleLoadList }));`;
    const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as { loaded: string[]; builtins: string[] };
    // The check sees what it looks for: prom-client's files are in the cache.
    expect(out.loaded.some((f) => f.endsWith('/prom-client/lib/registry.js'))).toBe(true);
    expect(out.loaded.filter((f) => f.endsWith('/prom-client/index.js') || f.includes('/@opentelemetry/') || f.endsWith('/pushgateway.js'))).toEqual([]);
    expect(out.builtins.filter((m) => /^NativeModule (https|tls|zlib|cluster)$/.test(m))).toEqual([]);
  });
});
