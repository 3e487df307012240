/**
 * The agent runs under AGENT_NODE_FLAGS wherever it is launched: the LaunchDaemon's plist and
 * `bin/expo-worker agent` (the test farm, which the benchmarks use, spreads the constant itself).
 * The script is run for real, with a preload that records the flags its node received.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { AGENT_NODE_FLAGS } from '../../../src/agent/node-flags.ts';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const run = promisify(execFile);

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** The `execArgv` of the CLI process `bin/expo-worker <args>` started (the preload skips the script's `node -e` probes). */
async function execArgvOf(args: string[]): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'expo-node-flags-'));
  dirs.push(dir);
  const out = join(dir, 'argv.json');
  const hook = join(dir, 'hook.mjs');
  writeFileSync(hook, `import { writeFileSync } from 'node:fs';\nif (process.argv[1]?.includes('cli.')) writeFileSync(${JSON.stringify(out)}, JSON.stringify(process.execArgv));\n`);
  await run(join(ROOT, 'bin', 'expo-worker'), args, { env: { ...process.env, NODE_OPTIONS: `--import=${hook}` } });
  return JSON.parse(readFileSync(out, 'utf8')) as string[];
}

describe('AGENT_NODE_FLAGS', () => {
  it('the LaunchDaemon template passes each flag to node, before the CLI', () => {
    const template = readFileSync(join(ROOT, 'launchd', 'com.expo-worker.agent.plist'), 'utf8');
    const args = [...template.slice(template.indexOf('<key>ProgramArguments</key>')).matchAll(/<string>([^<]*)<\/string>/g)].map((m) => m[1]);
    expect(args.slice(0, AGENT_NODE_FLAGS.length + 2)).toEqual(['{{NODE_PATH}}', ...AGENT_NODE_FLAGS, '{{CLI_PATH}}']);
  });

  it('bin/expo-worker starts node with them for `agent`, and not for other commands', async () => {
    const agent = await execArgvOf(['agent', '--help']);
    for (const flag of AGENT_NODE_FLAGS) expect(agent).toContain(flag);
    const other = await execArgvOf(['--help']);
    for (const flag of AGENT_NODE_FLAGS) expect(other).not.toContain(flag);
  });
});
