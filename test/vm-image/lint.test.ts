/**
 * The VM scripts run on macOS's bash 3.2: shellcheck them, and refuse the constructs 3.2 lacks.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { MONITOR, PROVISION } from './support.ts';

const run = promisify(execFile);
const SCRIPTS = [MONITOR, PROVISION];

/** What bash 3.2 cannot parse or run, each with why it matters. */
const BASH4_ONLY: [RegExp, string][] = [
  [/\bdeclare\s+-[a-zA-Z]*A/, 'associative arrays (declare -A)'],
  [/\bdeclare\s+-[a-zA-Z]*g/, 'declare -g'],
  [/\bmapfile\b/, 'mapfile'],
  [/\breadarray\b/, 'readarray'],
  [/\$\{[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?(,,?|\^\^?)[^}]*\}/, 'case modification ${x,,} / ${x^^}'],
  [/\|&/, '|& (pipe stderr too)'],
  [/&>>/, '&>> (append both streams)'],
  [/\bcoproc\b/, 'coproc'],
  [/\$\{[A-Za-z_][A-Za-z0-9_]*:\s+-\d/, 'negative substring offsets ${x: -1}'],
  [/\bsleep\s+[0-9]*\.[0-9]/, 'fractional sleep'],
  [/\bwait\s+-n\b/, 'wait -n'],
];

describe('the VM scripts', () => {
  it('pass shellcheck', async () => {
    await expect(run('shellcheck', ['-x', ...SCRIPTS], { env: process.env })).resolves.toBeDefined();
  });

  it.each(SCRIPTS)('%s uses nothing bash 3.2 lacks', (script) => {
    const found: string[] = [];
    readFileSync(script, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        const code = line.replace(/^\s*#.*$/, '');
        for (const [re, what] of BASH4_ONLY) if (re.test(code)) found.push(`line ${i + 1}: ${what}: ${line.trim()}`);
      });
    expect(found).toEqual([]);
  });

  it('the lint catches what it claims to', () => {
    const bad = ['declare -A m', 'mapfile -t a < f', 'echo ${x,,}', 'echo ${x^^}', 'a |& b', 'a &>> f', 'coproc x', 'declare -g y', 'echo ${x: -1}'];
    for (const line of bad) expect(BASH4_ONLY.some(([re]) => re.test(line)), line).toBe(true);
  });

  it('are syntactically valid bash', async () => {
    for (const s of SCRIPTS) await expect(run('bash', ['-n', s], { env: process.env })).resolves.toBeDefined();
  });
});
