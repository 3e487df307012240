/**
 * The agent's memory by module, with the whole idle graph loaded (the built `dist/`).
 *
 * A module's share is measured by leaving it out: one child Node process loads everything the
 * idle agent loads (`agent/main.js`), others load the same graph with one package left out
 * (the agent's own code stands in with the other heavy packages), and the share is the
 * difference, RSS after a GC, median of three children each. Loaded alone, a package would look
 * ~20 MB bigger: the first sizeable graph in a process pays the loader's and V8's warm-up (and a
 * young generation grown by the load), which the rest then share; leaving one out of the whole
 * graph shows what idle would save without it. Then each lazy module's share, added on top of
 * the idle graph, as it loads at its first use.
 *
 * `node bench/agent/modules.ts` (after `npm run build`) prints these tables and the idle RSS of
 * a real agent (controller, tart simulator, no builds) beside bare Node — the quick run for this
 * part alone; bench/agent/run.ts prints the same rows among the rest. The farm starts the agent
 * as its LaunchDaemon does, under AGENT_NODE_FLAGS (src/agent/node-flags.ts); the module
 * table's children load code only and run without them.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { sampleProcess, table } from '../lib.ts';

/** The heavy packages the idle agent loads; their leave-one-out shares are the table's rows. */
const IDLE_PACKAGES: { what: string; spec?: string; file?: string }[] = [
  { what: 'pino (logging)', spec: 'pino' },
  { what: 'prom-client: Registry, Counter, Gauge, Histogram, default metrics (sys/prom-lite.ts)', file: 'dist/src/sys/prom-lite.js' },
  { what: 'node-cron (maintenance schedule, cron check of the config)', spec: 'node-cron' },
  { what: 'p-retry (controller client)', spec: 'p-retry' },
];
/** What the agent no longer loads while it idles, measured on top of the idle graph. */
const NOT_IDLE = [
  { what: "not idle: prom-client's index (Pushgateway: node:https, TLS, zlib; Summary; cluster)", spec: 'prom-client' },
  { what: "not idle: @opentelemetry/api (prom-client's CPU metric's exemplars)", spec: '@opentelemetry/api' },
  { what: 'not idle: undici (replaced by node:http in the controller client)', spec: 'undici' },
  { what: 'not idle: typebox + protocol schemas (route table split: agent-routes.ts)', file: 'dist/src/protocol/routes.js' },
  { what: 'not idle: conf (+ ajv, semver, atomically; the config is plain JSON read)', spec: 'conf' },
];
/** What loads later, each only when first needed. */
const LAZY = [
  { what: 'lazy: build kit at the first claim (runner, VM, ssh2, workspace, checkout, artifacts)', file: 'dist/src/agent/build-kit.js' },
  { what: 'lazy: pino-pretty (only with --log-format pretty or a terminal)', spec: 'pino-pretty' },
];

/** Loads its list in order, then prints the RSS after a GC, MB. */
const CHILD = `
for (const spec of JSON.parse(process.argv[1])) await import(spec);
await new Promise((res) => setTimeout(res, 20));
globalThis.gc();
globalThis.gc();
console.log(process.memoryUsage().rss / 1e6);
`;

type Row = { module: string; 'share MB': string; 'RSS MB': string };

/** RSS after loading `specs`, MB: the median of three child processes. */
function rssAfter(root: URL, specs: string[]): number {
  const xs = [0, 1, 2].map(() => Number(execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', CHILD, JSON.stringify(specs)], { encoding: 'utf8', cwd: root.pathname })));
  return xs.sort((a, b) => a - b)[1]!;
}

/** Rows of the per-module table: `module`, `share MB`, `RSS MB`. Needs `npm run build`. */
export function moduleMemoryRows(root: URL): Row[] {
  const spec = (r: { spec?: string; file?: string }) => (r.file !== undefined ? new URL(r.file, root).href : import.meta.resolve(r.spec!));
  const main = new URL('dist/src/agent/main.js', root).href;
  const pkgs = IDLE_PACKAGES.map(spec);
  const bare = rssAfter(root, []);
  const whole = rssAfter(root, [...pkgs, main]);
  const fmt = (x: number) => x.toFixed(1);
  const signed = (x: number) => `${x >= 0 ? '+' : ''}${fmt(x)}`;
  const rows: Row[] = [
    { module: 'bare Node', 'share MB': '0.0', 'RSS MB': fmt(bare) },
    { module: 'the whole idle graph (agent/main.js and all it imports)', 'share MB': fmt(whole - bare), 'RSS MB': fmt(whole) },
  ];
  // The agent's own code imports every package, so it is left out with them: the packages
  // alone, against the whole graph.
  const packagesOnly = rssAfter(root, pkgs);
  rows.push({ module: "  of it: the agent's own idle code (src/agent, protocol, sys, vm, health)", 'share MB': fmt(whole - packagesOnly), 'RSS MB': fmt(packagesOnly) });
  IDLE_PACKAGES.forEach((r, i) => {
    const without = rssAfter(root, pkgs.filter((_, j) => j !== i));
    rows.push({ module: `  of it: ${r.what}`, 'share MB': fmt(packagesOnly - without), 'RSS MB': fmt(without) });
  });
  for (const r of [...NOT_IDLE, ...LAZY]) {
    const withIt = rssAfter(root, [...pkgs, main, spec(r)]);
    rows.push({ module: r.what, 'share MB': signed(withIt - whole), 'RSS MB': fmt(withIt) });
  }
  return rows;
}

/** RSS of a process, MB, now. */
const rssMb = (pid: number) => sampleProcess(pid).rssBytes / 1e6;

/**
 * A process's RSS split, MB: anonymous (its heaps) and file-backed — mostly pages of the node
 * binary itself (built-in modules' code, OpenSSL), clean and shared with every Node process on
 * the host. Linux only (`/proc/<pid>/status`).
 */
function rssSplitMb(pid: number): { anonMb: number; fileMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { anonMb: (kb('RssAnon') * 1024) / 1e6, fileMb: (kb('RssFile') * 1024) / 1e6 };
}

/**
 * The idle footprint of a running agent beside a bare Node process started now and sampled
 * alike, after `idleS`: RSS and CPU of both.
 */
export async function idleFootprint(
  agentPid: number,
  idleS: number,
): Promise<{ agentMb: number; bareMb: number; agentCpuPct: number; bareCpuPct: number; agentSplit: { anonMb: number; fileMb: number }; bareSplit: { anonMb: number; fileMb: number } }> {
  const sleep = (t: number) => new Promise((r) => setTimeout(r, t));
  const bare = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  try {
    await sleep(1000);
    const a0 = sampleProcess(agentPid);
    const n0 = sampleProcess(bare.pid!);
    await sleep(idleS * 1000);
    const a1 = sampleProcess(agentPid);
    const n1 = sampleProcess(bare.pid!);
    const pct = (c0: number, c1: number) => ((c1 - c0) / idleS) * 100;
    return {
      agentMb: rssMb(agentPid),
      bareMb: rssMb(bare.pid!),
      agentCpuPct: pct(a0.cpuS, a1.cpuS),
      bareCpuPct: pct(n0.cpuS, n1.cpuS),
      agentSplit: rssSplitMb(agentPid),
      bareSplit: rssSplitMb(bare.pid!),
    };
  } finally {
    bare.kill();
  }
}

async function main(): Promise<void> {
  const { startFarm } = await import('../../test/support/farm.ts');
  const root = new URL('../../', import.meta.url);
  const idleS = process.env.BENCH_QUICK === '1' ? 5 : 20;
  const farm = await startFarm({ agentCli: new URL('dist/src/cli.js', root).pathname });
  let idle;
  try {
    const agent = farm.agents[0]!;
    await agent.waitFor('agent ready', 60_000);
    await new Promise((r) => setTimeout(r, 2000));
    idle = await idleFootprint(agent.proc.pid!, idleS);
  } finally {
    await farm.stop();
  }
  const mb = (x: number) => `${x.toFixed(1)} MB`;
  console.log(
    table(`Idle agent (no build yet), sampled over ${idleS} s beside bare Node; load average ${(await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' ')}`, [
      { measure: 'bare Node RSS', value: mb(idle.bareMb) },
      { measure: 'idle agent RSS (goal ≤ 80 MB)', value: mb(idle.agentMb) },
      { measure: 'idle agent over bare Node', value: mb(idle.agentMb - idle.bareMb) },
      { measure: '  of it anonymous (heaps; bare Node / agent)', value: `${mb(idle.bareSplit.anonMb)} / ${mb(idle.agentSplit.anonMb)}` },
      { measure: '  of it file-backed (pages of the node binary, shared; bare Node / agent)', value: `${mb(idle.bareSplit.fileMb)} / ${mb(idle.agentSplit.fileMb)}` },
    ]),
  );
  console.log(table("The agent's memory by module (the built agent's graph, RSS after a GC; shares by leaving one out)", moduleMemoryRows(root)));
}

if (import.meta.main) await main();
