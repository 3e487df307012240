/**
 * The controller's memory, measured on the whole module graph once:
 * 1. idle RSS of a real controller (SQLite, nobody talking) beside a bare Node process, both
 *    sampled in the same rounds;
 * 2. per-module shares: one child Node process loads the built controller's graph
 *    (`dist/src/controller/main.js`) package by package in the order the source reaches them,
 *    then the controller's own code; each row is the RSS it added (after a GC) on top of all the
 *    rows above it. The shares add up to the whole graph: they are not modules measured alone,
 *    each of which would pay Node's shared start-up pages again.
 * The agent's side is bench/agent/run.ts (idle RSS) and bench/agent/modules.ts (its graph).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { QUICK, ROUNDS, load1, loadLine, sampleProcess, spawnServer, spread, table } from '../lib.ts';
import { controllers } from './servers.ts';

const ROOT = new URL('../../', import.meta.url);

/** Printed above the tables. */
const ABOUT = `The idle controller (SQLite, no clients) and a bare Node process, sampled in the same rounds.
Then its memory by module, measured on the whole module graph at once: one Node process loads the
built controller's graph package by package, in the order its source reaches them, then its own
code; each row is the RSS that step added (after a GC) on top of the rows above. The shares add
up to the whole graph; a module measured alone would pay Node's shared start-up pages again.
The agent's idle RSS and its graph are in the Agent part below.
`;

/**
 * The npm packages the controller's static import graph reaches, in the order a depth-first
 * walk of the source's `import … from` lines first meets them (type-only imports skipped).
 */
export function packagesReached(entry: string): string[] {
  const seen = new Set<string>();
  const packages: string[] = [];
  const walk = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^\s*(?:import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?['"]([^'"]+)['"]/gm)) {
      if (m[1]) continue;
      const spec = m[2]!;
      if (spec.startsWith('.')) walk(resolve(dirname(file), spec));
      else if (!spec.startsWith('node:') && !packages.includes(spec)) packages.push(spec);
    }
  };
  walk(entry);
  return packages;
}

const CHILD = `
const rows = JSON.parse(process.argv[1]);
const rss = () => { globalThis.gc(); return process.memoryUsage().rss; };
const out = [];
let before = rss();
out.push({ what: 'bare Node', addedMb: 0, totalMb: before / 1e6 });
for (const r of rows) {
  await import(r.spec);
  await new Promise((res) => setTimeout(res, 20));
  const now = rss();
  out.push({ what: r.what, addedMb: (now - before) / 1e6, totalMb: now / 1e6 });
  before = now;
}
console.log(JSON.stringify(out));
`;

/** Per-module rows of the controller's graph, loaded once in one process. Needs `npm run build`. */
function graphRows(): Record<string, string>[] {
  const packages = packagesReached(new URL('src/controller/main.ts', ROOT).pathname);
  const rows = [
    ...packages.map((p) => ({ what: p, spec: import.meta.resolve(p) })),
    { what: "the controller's own code (controller/main.js: the whole graph is loaded here)", spec: new URL('dist/src/controller/main.js', ROOT).href },
  ];
  const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', CHILD, JSON.stringify(rows)], { encoding: 'utf8', cwd: ROOT.pathname });
  const measured = JSON.parse(out) as { what: string; addedMb: number; totalMb: number }[];
  return measured.map((m) => ({ module: m.what, 'added MB': m.addedMb.toFixed(1), 'total MB': m.totalMb.toFixed(1) }));
}

/** The controller memory section's markdown. */
export async function benchControllerMemory(): Promise<string> {
  const settleMs = QUICK ? 2000 : 5000;
  const gapMs = QUICK ? 1000 : 3000;
  const cs = await controllers('memory', 'SQLite');
  if (typeof cs === 'string') throw new Error(cs);
  const controller = cs[0]!;
  const bare = spawnServer(['-e', 'setInterval(() => {}, 1000)'], 'ignore');
  try {
    await new Promise((r) => setTimeout(r, settleMs));
    const ours: number[] = [];
    const base: number[] = [];
    const loads: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      if (r > 0) await new Promise((res) => setTimeout(res, gapMs));
      loads.push(load1());
      base.push(sampleProcess(bare.pid!).rssBytes / 1e6);
      ours.push(sampleProcess(controller.proc.pid!).rssBytes / 1e6);
    }
    const diff = ours.map((x, r) => x - base[r]!);
    const graph = graphRows();
    const loaded = Number(graph[graph.length - 1]!['total MB']);
    return [
      ABOUT,
      table(`Idle controller RSS (SQLite, no clients; ${ROUNDS} samples ${gapMs / 1000} s apart after ${settleMs / 1000} s; median (min–max))`, [
        { process: 'bare Node (baseline)', 'RSS MB': spread(base, 1) },
        { process: 'expo-worker controller, idle', 'RSS MB': spread(ours, 1) },
        { process: 'controller over bare Node, per sample', 'RSS MB': spread(diff, 1) },
      ]),
      loadLine(loads),
      '',
      table("The controller's memory by module (one Node process loading the built controller's whole graph; RSS after a GC)", graph),
      `The whole graph loaded in one process comes to ${loaded.toFixed(1)} MB; the idle controller above (median ${spread(ours, 1).split(' ')[0]} MB) holds the difference beyond its loaded code.`,
      '',
    ].join('\n');
  } finally {
    bare.kill();
    await controller.stop();
  }
}
