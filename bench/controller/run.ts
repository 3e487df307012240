/**
 * `npm run bench` (builds first): every benchmark, printed as the whole body of
 * docs/benchmarks.md (markdown on stdout, progress on stderr). `node bench/controller/run.ts
 * [section…]` runs some: ingestion, dispatch (with the graphile-worker peer), watchdog, scale,
 * scale-pg, memory, agent. BENCH_QUICK=1 shortens every measurement (not the rounds);
 * BENCH_ROUNDS sets the rounds (at least 3); BENCH_PIN=0 turns off the taskset pinning.
 * PostgreSQL is a throwaway server started here as the tests start theirs
 * (test/support/postgres.ts); where it is not installed its rows say why and are skipped.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { CORES, QUICK, ROUNDS, pinApart, placement } from '../lib.ts';
import { benchDispatch } from './dispatch.ts';
import { benchIngestion } from './ingestion.ts';
import { benchControllerMemory } from './memory.ts';
import { benchScale } from './scale.ts';
import { closeServers } from './servers.ts';
import { watchdogBench } from './watchdog.ts';

/** The machine and the run, for the top of the report. */
function header(started: Date): string {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? 'unknown CPU model';
  const la = loadavg().map((x) => x.toFixed(2)).join(' / ');
  return [
    '# Benchmarks',
    '',
    `Printed by \`${QUICK ? 'BENCH_QUICK=1 ' : ''}${which.length > 0 ? `node bench/controller/run.ts ${which.join(' ')}` : 'npm run bench'}\` on ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC: ${CORES} cores (${model}), Node ${process.version}, ${ROUNDS} rounds${QUICK ? ' (QUICK: shorter measurements)' : ''}; load average (1 / 5 / 15 min) ${la} at the start. Server and load generator: ${placement.note}.`,
    '',
  ].join('\n');
}

/** How the benchmarks measure: printed once, under the header. */
const METHOD = `\`npm run bench\` builds, then prints this whole file (markdown on stdout, progress on stderr);
\`node bench/controller/run.ts ingestion dispatch watchdog scale scale-pg memory agent\` runs some
sections. \`BENCH_QUICK=1\` shortens every measurement (not the rounds), \`BENCH_ROUNDS\` sets the
rounds, \`BENCH_WORKERS\` the scale fleet (2000), \`BENCH_PIN=0\` turns the pinning off.

Every benchmark compares its subjects with a baseline measured in the same run on the same
machine, and none of them is a pass/fail test. The servers (controllers, PostgreSQL, the bare
Fastify baseline) run for the whole of a benchmark, and each round measures the baseline and
every subject in turn, for the same time; a benchmark runs at least 3 rounds (\`BENCH_ROUNDS\`).
A ratio is computed within each round (the subject against that round's baseline), so load
that comes and goes on the machine hits both sides of it; the tables show the median of the
rounds and their range (min–max), and a goal says in how many rounds it was met. Under each
table: the 1-minute load average at the start of each round, and whether the server and the
load generator shared a core — with 2 or more cores and util-linux \`taskset\`, the servers are
pinned to one half of the CPUs and the benchmark process (the load generator) to the other;
otherwise the CPU each last ran on (\`processor\`, field 39 of /proc/<pid>/stat) is sampled every
10 ms and the share of samples on the same core is printed. Other work on the machine is not
pinned away: compare rows within one table, not absolute figures between runs or machines.

Heartbeat ingestion also reports the server's CPU per request: the process's utime + stime
(/proc/<pid>/stat) over the window divided by the requests it answered. Unlike requests/s it
does not depend on how much CPU the load generator gets. Dispatch latency is measured beside
its peer, graphile-worker 0.18 (a devDependency) on the same PostgreSQL server, the way
graphile-worker's own latency test measures it (perfTest/latencyTest.js: a running worker pool
with 24 concurrent jobs, a local queue of 500 and no batching delays; jobs added one at a time
with \`graphile_worker.add_job\`, each timed until its task handler starts).
`;

/** The agent benchmarks: their own process (bench/agent/run.ts), markdown passed through. */
async function benchAgent(): Promise<string> {
  // The agent bench has no load generator to keep apart: it gets every CPU this run may use back.
  const args = [new URL('../agent/run.ts', import.meta.url).pathname];
  const child = placement.pinned
    ? spawn('taskset', ['-c', `${placement.serverCpus},${placement.loadCpus}`, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) out += `\n(bench/agent/run.ts exited with ${code}: the tables above are what it printed before)\n`;
  return out;
}

/** Sections in the order printed; a heading line (`##`) before a section starts a part of the report. */
const sections: [name: string, heading: string | null, run: () => Promise<string>][] = [
  ['ingestion', '## Controller', benchIngestion],
  ['dispatch', null, benchDispatch],
  ['watchdog', null, watchdogBench],
  ['scale', null, () => benchScale('SQLite', 1)],
  ['scale-pg', null, () => benchScale('PostgreSQL', 2)],
  ['memory', '## Memory', benchControllerMemory],
  ['agent', '## Agent', benchAgent],
];

const which = process.argv.slice(2);
const unknown = which.filter((w) => !sections.some(([name]) => name === w) && w !== 'peer');
if (unknown.length > 0) {
  console.error(`unknown section(s): ${unknown.join(', ')}; known: ${sections.map(([n]) => n).join(', ')} (peer runs with dispatch)`);
  await closeServers();
  process.exit(2);
}
pinApart();
const startedAt = new Date();
console.log(header(startedAt));
console.log(METHOD);
try {
  for (const [name, heading, run] of sections) {
    if (which.length > 0 && !which.includes(name) && !(name === 'dispatch' && which.includes('peer'))) continue;
    console.error(`running ${name}…`);
    const t = performance.now();
    if (heading) console.log(`${heading}\n`);
    try {
      console.log(await run());
    } catch (err) {
      console.log(`**${name}: failed** (${(err as Error).message.split('\n')[0]})\n`);
      process.exitCode = 1;
    }
    console.error(`${name} took ${((performance.now() - t) / 1000).toFixed(0)} s`);
  }
  console.log(`Finished ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; load average (1 / 5 / 15 min) ${loadavg().map((x) => x.toFixed(2)).join(' / ')} at the end.`);
} finally {
  await closeServers();
}
