/**
 * monitoring/: the alert rules pass `promtool check rules` and their unit tests
 * (`promtool test rules`), the example Prometheus config passes `promtool check config`, and
 * the Grafana dashboard only queries metrics we export or node_exporter's, through its
 * datasource variable. docs/metrics.md lists exactly the metrics we export.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ControllerMetrics } from '../../src/controller/metrics.ts';
import { PromAgentMetrics } from '../../src/agent/metrics.ts';
import { PromCacheMetrics } from '../../src/agent/build-caches.ts';

const MONITORING = fileURLToPath(new URL('../../monitoring/', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function promtool(args: string[]): { status: number | null; output: string } {
  const r = spawnSync('promtool', args, { cwd: MONITORING, encoding: 'utf8', env: process.env });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

/** Every metric the controller and the agent export, with its type. */
function exportedMetrics(): { name: string; type: string }[] {
  const agent = new PromAgentMetrics({ slots: () => ({ total: 1, busy: 0 }), hostDiskFreeBytes: async () => 0 }).registry;
  // The host caches' metrics join the agent's registry (build-caches.ts).
  new PromCacheMetrics(agent);
  const registries = [new ControllerMetrics({ heartbeatTimeoutMs: 120_000 }).registry, agent];
  return registries.flatMap((r) => r.getMetricsAsArray().map((m) => m as unknown as { name: string; type: string }));
}

/** Every series name we export: histograms with their `_bucket`, `_sum` and `_count`. */
function exportedWithSuffixes(): Set<string> {
  const out = new Set<string>();
  for (const { name, type } of exportedMetrics()) {
    out.add(name);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) out.add(`${name}${s}`);
  }
  return out;
}

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset']);

/** The metric names a PromQL expression reads. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names: string[] = [];
  for (const m of bare.matchAll(/(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    if (m[2] !== undefined || KEYWORDS.has(m[1]!)) continue; // a function call or a keyword
    names.push(m[1]!);
  }
  return names;
}

describe('monitoring/', () => {
  it('alert rules pass promtool check rules', () => {
    const r = promtool(['check', 'rules', 'alerts.yml']);
    expect(r.output).toContain('SUCCESS');
    expect(r.status, r.output).toBe(0);
  });

  it('alert rules pass their unit tests (promtool test rules)', () => {
    const r = promtool(['test', 'rules', 'alerts.test.yml']);
    expect(r.output).toContain('SUCCESS');
    expect(r.status, r.output).toBe(0);
  });

  it('the example prometheus.yml passes promtool check config', () => {
    const r = promtool(['check', 'config', 'prometheus.yml']);
    expect(r.status, r.output).toBe(0);
  });

  it('the alert rules name only metrics we export', () => {
    const exported = exportedWithSuffixes();
    const used = [...readFileSync(`${MONITORING}alerts.yml`, 'utf8').matchAll(/expo_worker_[a-z0-9_]+/g)].map((m) => m[0]);
    expect(used.length).toBeGreaterThan(5);
    expect(used.filter((n) => !exported.has(n))).toEqual([]);
  });

  it('the Grafana dashboard has a datasource variable and queries only our metrics or node_exporter’s', () => {
    const dash = JSON.parse(readFileSync(`${MONITORING}grafana-dashboard.json`, 'utf8')) as {
      templating: { list: { name: string; type: string; query: unknown; datasource?: { uid: string } }[] };
      panels: { type: string; title: string; datasource?: { uid: string }; targets?: { expr: string; datasource?: { uid: string } }[] }[];
    };
    const ds = dash.templating.list.find((v) => v.type === 'datasource');
    expect(ds).toMatchObject({ name: 'datasource', query: 'prometheus' });
    const exported = exportedWithSuffixes();
    const allowed = (n: string) => exported.has(n) || n.startsWith('node_') || n === 'up';
    const bad: string[] = [];
    let queries = 0;
    const titles = new Set<string>();
    for (const p of dash.panels) {
      if (p.type === 'row') {
        titles.add(p.title);
        continue;
      }
      expect(p.datasource?.uid, p.title).toBe('${datasource}');
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets ?? []) {
        expect(t.datasource?.uid ?? '${datasource}', p.title).toBe('${datasource}');
        const names = metricNames(t.expr);
        expect(names.length, `${p.title}: ${t.expr}`).toBeGreaterThan(0);
        for (const n of names) if (!allowed(n)) bad.push(`${p.title}: ${n}`);
        queries++;
      }
    }
    for (const v of dash.templating.list.filter((x) => x.type === 'query')) {
      expect(v.datasource?.uid).toBe('${datasource}');
      const q = String((v.query as { query: string }).query);
      const m = /label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(q);
      if (m && !allowed(m[1]!)) bad.push(`variable ${v.name}: ${m[1]}`);
    }
    expect(bad).toEqual([]);
    expect(queries).toBeGreaterThan(20);
    expect([...titles]).toEqual(['Builds', 'Queue', 'Workers', 'VM lifecycle', 'System resources']);
  });

  it('the expression parser finds metric names and skips functions, labels and keywords', () => {
    expect(metricNames('histogram_quantile(0.95, sum by (le, phase) (rate(a_bucket{x="y(z)"}[$__rate_interval])))')).toEqual(['a_bucket']);
    expect(metricNames('max by (instance) (a) > on (instance) 0.5 * b')).toEqual(['a', 'b']);
    expect(metricNames('100 * (1 - x / y) or z')).toEqual(['x', 'y', 'z']);
  });

  it('docs/metrics.md lists exactly the metrics we export', () => {
    const doc = readFileSync(`${ROOT}docs/metrics.md`, 'utf8');
    const documented = new Set([...doc.matchAll(/^\| `(expo_worker_[a-z0-9_]+)`/gm)].map((m) => m[1]!));
    const ours = exportedMetrics().map((m) => m.name).filter((n) => !/^expo_worker_(controller|agent)_(process|nodejs)_/.test(n));
    expect(ours.filter((n) => !documented.has(n))).toEqual([]);
    expect([...documented].filter((n) => !ours.includes(n))).toEqual([]);
  });
});
