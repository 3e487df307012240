/** Pipeline files parsed in a worker thread: the same answer as on the main thread, and a parse that runs too long is refused, not waited for. */
import { describe, expect, it } from 'vitest';
import { parsePipeline } from '../../../src/github/pipeline.ts';
import { parsePipelineIsolated } from '../../../src/github/pipeline-isolated.ts';

const GOOD = `builds:
  ios:
    steps:
      - {name: build, run: echo hi}
`;

describe('parsePipelineIsolated', () => {
  it('answers what parsePipeline answers, for a good file and a bad one', async () => {
    expect(await parsePipelineIsolated(GOOD)).toEqual(parsePipeline(GOOD));
    const bad = 'builds:\n  ios:\n    steps: 3\n';
    const r = await parsePipelineIsolated(bad);
    expect(r).toEqual(parsePipeline(bad));
    expect(r.ok).toBe(false);
  });

  it('refuses a parse that runs past its time limit', async () => {
    // Many small flow maps: legal YAML that keeps the parser busy far longer than the limit below.
    const heavy = `builds:\n${Array.from({ length: 3000 }, (_, i) => `  b${i}: {steps: [{name: a, run: b}], labels: [${'x, '.repeat(20)}y]}`).join('\n')}\n`;
    const r = await parsePipelineIsolated(heavy, { timeoutMs: 1 });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.errors[0]!.message).toMatch(/took longer than 0.001 s to parse/);
  });
});
