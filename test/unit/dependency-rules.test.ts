/**
 * The dependency checker (`npm run lint:deps`, .dependency-cruiser.cjs) fails on each thing it is
 * there to catch. Each case is a small src/ tree in a temp directory, cruised with the project's
 * real configuration; the real tree is checked by lint, not here.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const CONFIG = join(ROOT, '.dependency-cruiser.cjs');
const DEPCRUISE = join(ROOT, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruiser.mjs');

interface Violation {
  from: string;
  to: string;
  rule: { name: string; severity: string };
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'expo-deps-'));
  write('tsconfig.json', JSON.stringify({ compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', allowImportingTsExtensions: true, noEmit: true } }));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function write(path: string, text: string): void {
  mkdirSync(dirname(join(dir, path)), { recursive: true });
  writeFileSync(join(dir, path), text);
}

/**
 * Writes the files (path → source) and cruises src/ with the project's configuration. `errors`
 * is the count of error-severity violations: lint's reporter exits with it, so > 0 fails lint.
 */
function cruise(files: Record<string, string>): Promise<{ errors: number; violations: Violation[] }> {
  for (const [path, text] of Object.entries(files)) write(path, text);
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [DEPCRUISE, 'src', '--config', CONFIG, '--output-type', 'json'], { cwd: dir }, (err, stdout, stderr) => {
      try {
        const { summary } = JSON.parse(stdout) as { summary: { error: number; violations: Violation[] } };
        resolve({ errors: summary.error, violations: summary.violations });
      } catch {
        reject(new Error(`dependency-cruiser gave no JSON report (${err?.message ?? 'exit 0'}): ${stderr}`));
      }
    });
  });
}

const rules = (violations: Violation[]): string[] => [...new Set(violations.map((v) => v.rule.name))].sort();

describe('the dependency checker', () => {
  it('passes a tree that keeps the rules (so each failure below is for its own reason)', async () => {
    const r = await cruise({
      'src/protocol/errors.ts': "export class ExpoError extends Error {}\n",
      'src/vm/driver.ts': "import { ExpoError } from '../protocol/errors.ts';\nexport const fail = () => new ExpoError('x');\n",
      'src/health/port.ts': 'export interface Vm { list(): Promise<string[]> }\n',
      'src/vm/clone.ts': "import type { Vm } from '../health/port.ts';\nimport { fail } from './driver.ts';\nexport const use = (vm: Vm) => (vm ? vm : fail());\n",
      'src/cli.ts': "import { use } from './vm/clone.ts';\nexport { use };\n",
    });
    expect(r.violations).toEqual([]);
    expect(r.errors).toBe(0);
  });

  it('fails on a cycle between two files', async () => {
    const r = await cruise({
      'src/vm/a.ts': "import { b } from './b.ts';\nexport const a = () => b();\n",
      'src/vm/b.ts': "import { a } from './a.ts';\nexport const b = () => a();\n",
    });
    expect(r.errors).toBeGreaterThan(0);
    expect(rules(r.violations)).toEqual(['no-file-cycle']);
  });

  it('fails on a cycle made of type-only imports', async () => {
    const r = await cruise({
      'src/agent/runner.ts': "import type { Metrics } from './metrics.ts';\nexport interface Outcome { m?: Metrics }\n",
      'src/agent/metrics.ts': "import type { Outcome } from './runner.ts';\nexport interface Metrics { last?: Outcome }\n",
    });
    expect(r.errors).toBeGreaterThan(0);
    expect(rules(r.violations)).toEqual(['no-file-cycle']);
  });

  it('fails on an import of a room the importer may not use (health → vm)', async () => {
    const r = await cruise({
      'src/vm/vm-driver.ts': 'export interface VmDriver { list(): Promise<string[]> }\n',
      'src/health/checks.ts': "import type { VmDriver } from '../vm/vm-driver.ts';\nexport const check = (d: VmDriver) => d.list();\n",
    });
    expect(r.errors).toBeGreaterThan(0);
    expect(r.violations).toEqual([expect.objectContaining({ from: 'src/health/checks.ts', to: 'src/vm/vm-driver.ts', rule: expect.objectContaining({ name: 'not-in-allowed' }) })]);
  });

  it('fails on a cycle between folders even where no file cycle exists', async () => {
    const r = await cruise({
      'src/vm/a.ts': "import { b } from '../health/b.ts';\nexport const a = b;\n",
      'src/health/b.ts': 'export const b = 1;\n',
      'src/health/c.ts': "import { a } from '../vm/a.ts';\nexport const c = a;\n",
    });
    expect(r.errors).toBeGreaterThan(0);
    expect(rules(r.violations)).toEqual(['no-folder-cycle', 'not-in-allowed']);
  });

  it('fails on a folder of src/ that is not a listed room, and on a file outside any room', async () => {
    const r = await cruise({
      'src/protocol/errors.ts': 'export const E = 1;\n',
      'src/notaroom/hook.ts': "import { E } from '../protocol/errors.ts';\nexport const h = E;\n",
      'src/stray.ts': "import { readFileSync } from 'node:fs';\nexport const s = readFileSync;\n",
    });
    expect(r.errors).toBeGreaterThan(0);
    expect(r.violations.filter((v) => v.rule.name === 'no-unknown-room').map((v) => v.from).sort()).toEqual(['src/notaroom/hook.ts', 'src/stray.ts']);
  });

  it('lets the host tools read the agent config and nothing else of the agent', async () => {
    const r = await cruise({
      'src/agent/config.ts': 'export const load = () => ({});\n',
      'src/agent/agent.ts': 'export class Agent {}\n',
      'src/host/doctor.ts': "import { load } from '../agent/config.ts';\nimport { Agent } from '../agent/agent.ts';\nexport const d = [load, Agent];\n",
    });
    expect(r.violations).toEqual([expect.objectContaining({ from: 'src/host/doctor.ts', to: 'src/agent/agent.ts', rule: expect.objectContaining({ name: 'not-in-allowed' }) })]);
  });
});
