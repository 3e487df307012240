/**
 * The agent's memory by module, measured in one child Node process that loads the agent's
 * module graph the way the agent does (the built `dist/`): bare Node first, then the heavy
 * packages of the idle graph in the order the agent reaches them, then the rest of the agent's
 * own idle code (`agent/main.js`: the whole idle graph is loaded at that row), then each lazy
 * module as it would load later. Each row is the RSS it added (after a GC) on top of everything
 * above it — a module's share in the graph, not its size measured alone (the first module
 * loaded alone pays ~20 MB of loader and compiler warm-up that the rest then share).
 */
import { execFileSync } from 'node:child_process';

/** What the idle agent loads: its heavy packages in load order, then its own code. */
const IDLE = [
  { what: 'pino (logging)', spec: 'pino' },
  { what: 'undici (controller client)', spec: 'undici' },
  { what: 'typebox (protocol schemas, via the route table)', spec: 'typebox' },
  { what: 'prom-client (metrics)', spec: 'prom-client' },
  { what: 'conf (config file)', spec: 'conf' },
  { what: 'node-cron, p-retry', spec: 'node-cron' },
];
/** What loads later, each only when first needed. */
const LAZY = [
  { what: 'lazy: build kit at the first claim (runner, VM, ssh2, workspace, checkout, artifacts)', file: 'dist/src/agent/build-kit.js' },
  { what: 'lazy: pino-pretty (only with --log-format pretty or a terminal)', spec: 'pino-pretty' },
];

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

/** Rows of the per-module table: `module`, `added MB`, `total MB`. Needs `npm run build`. */
export function moduleMemoryRows(root: URL): { module: string; 'added MB': string; 'total MB': string }[] {
  const abs = (file: string) => new URL(file, root).href;
  const rows = [
    ...IDLE.map((r) => ({ what: r.what, spec: import.meta.resolve(r.spec) })),
    { what: "the agent's own idle code (agent/main.js; the whole idle graph is loaded here)", spec: abs('dist/src/agent/main.js') },
    ...LAZY.map((r) => ({ what: r.what, spec: 'file' in r && r.file !== undefined ? abs(r.file) : import.meta.resolve(r.spec!) })),
  ];
  const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', CHILD, JSON.stringify(rows)], { encoding: 'utf8', cwd: root.pathname });
  const measured = JSON.parse(out) as { what: string; addedMb: number; totalMb: number }[];
  return measured.map((m) => ({ module: m.what, 'added MB': m.addedMb.toFixed(1), 'total MB': m.totalMb.toFixed(1) }));
}
