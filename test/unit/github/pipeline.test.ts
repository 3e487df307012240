/**
 * The pipeline file parser: the example read exactly; each kind of problem reported with
 * its line, all of them at once; the refusals (size, alias bomb, malformed YAML, duplicate keys,
 * several documents, too many builds); what a parsed build is to the real controller; and which
 * builds an event selects.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Value } from 'typebox/value';
import { globMatches, parsePipeline, PIPELINE_LIMITS, triggers, type ParseResult, type Pipeline, type PipelineError, type PipelineEvent } from '../../../src/github/pipeline.ts';
import { CreateBuildBody, LIMITS } from '../../../src/protocol/schemas.ts';
import { startTestController, type TestController } from '../../controller/support.ts';

const EXAMPLE = `builds:
  ios:                          # a build per entry, named
    labels: [macos]
    timeoutS: 3600
    env: {EXPO_PUBLIC_ENV: staging}
    secrets: [APPLE_API_KEY]    # names of stored project secrets
    steps:
      - {name: install, run: npm ci}
      - {name: build, run: npx eas build --local --platform ios --non-interactive}
    artifacts: ["build-*.ipa"]
    on: {push: {branches: [main, "release/*"]}, pull_request: {}, tag: {}}
`;

function errorsOf(result: ParseResult): PipelineError[] {
  if (result.ok) throw new Error(`expected errors, got a pipeline: ${JSON.stringify(result.pipeline)}`);
  return result.errors;
}
function pipelineOf(result: ParseResult): Pipeline {
  if (!result.ok) throw new Error(`expected a pipeline, got errors: ${JSON.stringify(result.errors)}`);
  return result.pipeline;
}
/** One valid build's lines (under `builds:`) with `extra` lines added to its map. */
const oneBuild = (extra: string) => `builds:\n  ios:\n    steps:\n      - {name: build, run: make}\n${extra}`;

describe('parsePipeline: a valid file', () => {
  it("reads the issue's example into exactly this object", () => {
    expect(parsePipeline(EXAMPLE)).toEqual({
      ok: true,
      pipeline: {
        builds: [
          {
            name: 'ios',
            build: {
              steps: [
                { name: 'install', run: 'npm ci' },
                { name: 'build', run: 'npx eas build --local --platform ios --non-interactive' },
              ],
              labels: ['macos'],
              timeoutS: 3600,
              env: { EXPO_PUBLIC_ENV: 'staging' },
              artifacts: ['build-*.ipa'],
            },
            secrets: ['APPLE_API_KEY'],
            on: { push: { branches: ['main', 'release/*'] }, pull_request: {}, tag: {} },
            checkout: { submodules: false, lfs: false },
          },
        ],
      },
    });
  });

  it('keeps the builds in the order of the file, with defaults for what is left out', () => {
    const p = pipelineOf(parsePipeline('builds:\n  b:\n    steps: [{name: s, run: "true"}]\n  a:\n    steps: [{name: s, run: "false"}]\n    artifacts: [{path: out/app.ipa, required: true}]\n'));
    expect(p.builds.map((b) => b.name)).toEqual(['b', 'a']);
    expect(p.builds[0]).toEqual({ name: 'b', build: { steps: [{ name: 's', run: 'true' }] }, secrets: [], on: null, checkout: { submodules: false, lfs: false } });
    expect(p.builds[1]!.build.artifacts).toEqual([{ path: 'out/app.ipa', required: true }]);
  });

  it('reads checkout: submodules false, true or recursive, and lfs', () => {
    const read = (extra: string) => pipelineOf(parsePipeline(oneBuild(extra))).builds[0]!.checkout;
    expect(read('    checkout: {submodules: recursive, lfs: true}\n')).toEqual({ submodules: 'recursive', lfs: true });
    expect(read('    checkout: {submodules: true}\n')).toEqual({ submodules: true, lfs: false });
    expect(read('    checkout: {}\n')).toEqual({ submodules: false, lfs: false });
    // Not part of the API body: the build the controller makes carries it in its source.
    expect(pipelineOf(parsePipeline(oneBuild('    checkout: {lfs: true}\n'))).builds[0]!.build).not.toHaveProperty('checkout');
  });

  it('reads `on` as a key (YAML 1.2), not as the boolean true of YAML 1.1, and `push:` alone as push: {}', () => {
    const p = pipelineOf(parsePipeline(oneBuild('    on:\n      push:\n      pull_request: {branches: [main]}\n')));
    expect(p.builds[0]!.on).toEqual({ push: {}, pull_request: { branches: ['main'] } });
  });

  it('gives builds that are valid CreateBuildBody values (the schema the API checks)', () => {
    for (const b of pipelineOf(parsePipeline(EXAMPLE)).builds) expect(Value.Check(CreateBuildBody, b.build)).toBe(true);
  });
});

describe('parsePipeline: each problem, with its line', () => {
  // [what, file, line, column, path, message part]
  const cases: [string, string, number, number, string, string][] = [
    ['unknown top-level key', `version: 2\n${oneBuild('')}`, 1, 1, 'version', "unknown key 'version'"],
    ['unknown build key', oneBuild('    image: macos-15\n'), 5, 5, 'builds.ios.image', "unknown key 'image'"],
    ['unknown step key', 'builds:\n  ios:\n    steps:\n      - {name: a, run: b, shell: zsh}\n', 4, 27, 'builds.ios.steps[0].shell', "unknown key 'shell'"],
    ['builds not a map', 'builds: [ios]\n', 1, 9, 'builds', 'must be a map'],
    ['a build not a map', 'builds:\n  ios: make\n', 2, 8, 'builds.ios', 'must be a map'],
    ['no steps', 'builds:\n  ios:\n    labels: [macos]\n', 2, 3, 'builds.ios', 'has no steps'],
    ['empty steps', 'builds:\n  ios:\n    steps: []\n', 3, 12, 'builds.ios.steps', 'must hold at least 1 item'],
    ['empty step name', 'builds:\n  ios:\n    steps:\n      - {name: "", run: make}\n', 4, 16, 'builds.ios.steps[0].name', 'must not be empty'],
    ['step run not a string', 'builds:\n  ios:\n    steps:\n      - {name: a, run: [make]}\n', 4, 24, 'builds.ios.steps[0].run', 'must be a string'],
    ['bad build name', 'builds:\n  "ios build":\n    steps: [{name: a, run: b}]\n', 2, 3, 'builds.ios build', 'not a build name'],
    ['timeoutS a string', oneBuild('    timeoutS: "1h"\n'), 5, 15, 'builds.ios.timeoutS', 'must be a whole number'],
    ['timeoutS over the API limit', oneBuild(`    timeoutS: ${LIMITS.maxTimeoutS + 1}\n`), 5, 15, 'builds.ios.timeoutS', `must be at most ${LIMITS.maxTimeoutS}`],
    ['a step without run', 'builds:\n  ios:\n    steps:\n      - {name: a}\n', 4, 9, 'builds.ios.steps[0]', 'must have run'],
    ['a step not a map', 'builds:\n  ios:\n    steps:\n      - npm ci\n', 4, 9, 'builds.ios.steps[0]', 'must be a map'],
    ['101 steps', `builds:\n  ios:\n    steps:\n${'      - {name: s, run: make}\n'.repeat(101)}`, 4, 7, 'builds.ios.steps', 'must hold at most 100 items'],
    ['201 env vars', oneBuild(`    env:\n${Array.from({ length: 201 }, (_, i) => `      V${i}: x\n`).join('')}`), 6, 7, 'builds.ios.env', 'must hold at most 200 entries'],
    ['21 artifacts', oneBuild(`    artifacts: [${Array.from({ length: 21 }, (_, i) => `a${i}.ipa`).join(', ')}]\n`), 5, 16, 'builds.ios.artifacts', 'must hold at most 20 items'],
    ['33 labels', oneBuild(`    labels: [${Array.from({ length: 33 }, (_, i) => `l${i}`).join(', ')}]\n`), 5, 13, 'builds.ios.labels', 'must hold at most 32 items'],
    ['labels not a list', oneBuild('    labels: macos\n'), 5, 13, 'builds.ios.labels', 'must be a list'],
    ['bad label', oneBuild('    labels: ["mac os"]\n'), 5, 14, 'builds.ios.labels[0]', 'a label is'],
    ['env name', oneBuild('    env: {9LIVES: x}\n'), 5, 11, 'builds.ios.env.9LIVES', 'not a valid env name'],
    ['env value a number', oneBuild('    env: {RETRIES: 3}\n'), 5, 20, 'builds.ios.env.RETRIES', 'must be a string (quote it)'],
    ['secret name', oneBuild('    secrets: [apple_key]\n'), 5, 15, 'builds.ios.secrets[0]', 'a secret name is upper-case'],
    ['secret twice', oneBuild('    secrets: [A, A]\n'), 5, 18, 'builds.ios.secrets[1]', 'listed twice'],
    ['secret also in env', oneBuild('    env: {TOKEN: x}\n    secrets: [TOKEN]\n'), 6, 15, 'builds.ios.secrets[0]', 'in env too'],
    ['artifact escaping the work dir', oneBuild('    artifacts: ["../secret"]\n'), 5, 17, 'builds.ios.artifacts[0]', 'without ..'],
    ['artifact pattern too long (one problem, not two)', oneBuild(`    artifacts: ["${'a'.repeat(513)}"]\n`), 5, 17, 'builds.ios.artifacts[0]', 'must be at most 512 characters'],
    ['artifact neither form', oneBuild('    artifacts: [42]\n'), 5, 17, 'builds.ios.artifacts[0]', 'a pattern string or {path, required}'],
    ['artifact object with a bad field', oneBuild('    artifacts: [{path: a.ipa, required: "yes"}]\n'), 5, 41, 'builds.ios.artifacts[0].required', 'must be boolean'],
    ['unknown event', oneBuild('    on: {schedule: {}}\n'), 5, 10, 'builds.ios.on.schedule', "unknown event 'schedule'"],
    ['unknown trigger key', oneBuild('    on: {pull_request: {types: [opened]}}\n'), 5, 25, 'builds.ios.on.pull_request.types', "unknown key 'types'"],
    ['tag takes no keys', oneBuild('    on: {tag: {tags: [v1]}}\n'), 5, 16, 'builds.ios.on.tag.tags', 'takes no keys'],
    ['branches not a list', oneBuild('    on: {push: {branches: main}}\n'), 5, 27, 'builds.ios.on.push.branches', 'must be a list'],
    ['empty branch list', oneBuild('    on: {push: {branches: []}}\n'), 5, 27, 'builds.ios.on.push.branches', 'at least one pattern'],
    ['glob not a string', oneBuild('    on: {push: {tags: [1.0]}}\n'), 5, 24, 'builds.ios.on.push.tags[0]', 'must be a string'],
    ['checkout not a map', oneBuild('    checkout: shallow\n'), 5, 15, 'builds.ios.checkout', 'must be a map of submodules and lfs'],
    ['unknown checkout key', oneBuild('    checkout: {depth: 1}\n'), 5, 16, 'builds.ios.checkout.depth', "unknown key 'depth'"],
    ['submodules neither boolean nor recursive', oneBuild('    checkout: {submodules: all}\n'), 5, 28, 'builds.ios.checkout.submodules', 'must be false, true (the first level) or recursive'],
    ['lfs not a boolean', oneBuild('    checkout: {lfs: "yes"}\n'), 5, 21, 'builds.ios.checkout.lfs', 'must be true or false'],
  ];
  for (const [what, file, line, column, path, message] of cases) {
    it(what, () => {
      const errors = errorsOf(parsePipeline(file));
      expect(errors, JSON.stringify(errors)).toHaveLength(1);
      expect(errors[0]).toMatchObject({ line, column, path });
      expect(errors[0]!.message).toContain(message);
    });
  }

  it('counts a step command in bytes of UTF-8, as the API does (64 KiB of "é" is 128 KiB)', () => {
    const run = 'é'.repeat(LIMITS.maxStepRunBytes / 2 + 1);
    const errors = errorsOf(parsePipeline(`builds:\n  ios:\n    steps:\n      - name: big\n        run: "${run}"\n`));
    expect(errors).toEqual([{ line: 5, column: 14, path: 'builds.ios.steps[0].run', message: `must be at most ${LIMITS.maxStepRunBytes} bytes of UTF-8` }]);
    expect(parsePipeline(`builds:\n  ios:\n    steps:\n      - name: big\n        run: "${'é'.repeat(LIMITS.maxStepRunBytes / 2)}"\n`).ok).toBe(true);
  });

  it('reports every problem of every build at once, in the order of the file', () => {
    const file = [
      'builds:', //                                  1
      '  ios:', //                                   2
      '    labels: [macos, macos]', //               3
      '    timeoutS: 0', //                          4
      '    steps:', //                               5
      '      - {name: "", run: npm ci}', //          6
      '    colour: red', //                          7
      '  android:', //                               8
      '    steps: [{name: a, run: b}]', //           9
      '    env: {lower-case: x}', //                 10
      '    on: {push: {branches: [""]}}', //         11
      '  "bad/name":', //                            12
      '    steps: []', //                            13
      '',
    ].join('\n');
    const errors = errorsOf(parsePipeline(file));
    expect(errors.map((e) => [e.line, e.path])).toEqual([
      [3, 'builds.ios.labels'],
      [4, 'builds.ios.timeoutS'],
      [6, 'builds.ios.steps[0].name'],
      [7, 'builds.ios.colour'],
      [10, 'builds.android.env.lower-case'],
      [11, 'builds.android.on.push.branches[0]'],
      [12, 'builds.bad/name'],
      // A build whose name is refused is not checked further (its empty steps on line 13 are not reported).
    ]);
  });

  it('names a hostile key in at most 64 characters, and checks nothing under a refused build name', () => {
    const long = 'n'.repeat(1_000); // YAML caps an implicit key at 1,024 characters
    const badSteps = Array.from({ length: 150 }, () => '      - {name: "", run: ""}').join('\n');
    const errors = errorsOf(parsePipeline(`builds:\n  "${long}":\n    steps:\n${badSteps}\n  ios:\n    steps: [{name: a, run: b}]\n    ${long}: 1\n`));
    expect(errors.map((e) => e.path)).toEqual([`builds.${'n'.repeat(64)}…`, `builds.ios.${'n'.repeat(64)}…`]);
    expect(JSON.stringify(errors).length).toBeLessThan(2_000);
  });

  it('caps the errors it lists and says how many more there were', () => {
    const steps = Array.from({ length: 100 }, () => '      - {name: "", run: ""}').join('\n');
    const errors = errorsOf(parsePipeline(`builds:\n  ios:\n    steps:\n${steps}\n`));
    expect(errors).toHaveLength(PIPELINE_LIMITS.maxErrors + 1);
    expect(errors.at(-1)!.message).toBe('and 100 more errors');
  });
});

describe('parsePipeline: refusals', () => {
  it('refuses 1,000 builds with one error on the builds line', () => {
    const builds = Array.from({ length: 1000 }, (_, i) => `  b${i}: {steps: [{name: s, run: make}]}`).join('\n');
    const errors = errorsOf(parsePipeline(`# many\nbuilds:\n${builds}\n`));
    expect(errors).toEqual([{ line: 2, column: 1, path: 'builds', message: 'builds names 1000 builds; at most 50 are allowed' }]);
  });

  it('takes exactly 50 builds', () => {
    const builds = Array.from({ length: 50 }, (_, i) => `  b${i}: {steps: [{name: s, run: make}]}`).join('\n');
    expect(pipelineOf(parsePipeline(`builds:\n${builds}\n`)).builds).toHaveLength(50);
  });

  it('refuses a 10 MB file before parsing it', () => {
    const huge = `builds:\n  ios:\n    steps: [{name: s, run: "${'x'.repeat(10 * 1024 * 1024)}"}]\n`;
    expect(errorsOf(parsePipeline(huge))).toEqual([{ line: 1, column: 1, path: '', message: 'the file is larger than 262144 bytes; it is not read' }]);
  });

  it('measures the cap in bytes: fewer characters than the cap but more bytes is refused', () => {
    const text = `# ${'é'.repeat(PIPELINE_LIMITS.maxFileBytes / 2)}\n${EXAMPLE}`;
    expect(text.length).toBeLessThan(PIPELINE_LIMITS.maxFileBytes);
    expect(errorsOf(parsePipeline(text))[0]!.message).toContain('larger than');
  });

  it('refuses an alias bomb ("billion laughs") instead of expanding it', () => {
    const bomb = [
      'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
      'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]',
      'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]',
      'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]',
      'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]',
      'f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]',
      'g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]',
      'builds: {ios: {steps: [{name: s, run: *g}]}}',
    ].join('\n');
    const errors = errorsOf(parsePipeline(bomb));
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toMatch(/alias/i);
  });

  it('follows a few aliases (anchors are fine in moderation)', () => {
    const p = pipelineOf(parsePipeline('builds:\n  a: &base\n    steps: [{name: s, run: make}]\n  b: *base\n'));
    expect(p.builds.map((b) => b.build)).toEqual([{ steps: [{ name: 's', run: 'make' }] }, { steps: [{ name: 's', run: 'make' }] }]);
  });

  it('gives the line and column of a YAML syntax error', () => {
    const errors = errorsOf(parsePipeline('builds:\n  ios:\n    steps:\n      - {name: a, run: b\n    labels: [macos]\n'));
    expect(errors).toEqual([{ line: 5, column: 5, path: '', message: 'Flow map in block collection must be sufficiently indented and end with a }' }]);
  });

  it('gives the line of a bad indentation', () => {
    const errors = errorsOf(parsePipeline('builds:\n  ios:\n    steps: [{name: a, run: b}]\n   labels: [x]\n'));
    expect(errors[0]!.line).toBe(4);
  });

  it('refuses a key given twice, at the second one', () => {
    const errors = errorsOf(parsePipeline('builds:\n  ios:\n    steps: [{name: a, run: b}]\n  ios:\n    steps: [{name: c, run: d}]\n'));
    expect(errors).toEqual([{ line: 4, column: 3, path: '', message: 'a key is given twice in the same map' }]);
  });

  it('refuses more than one document', () => {
    const errors = errorsOf(parsePipeline(`${oneBuild('')}---\n${oneBuild('')}`));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ line: 5, message: expect.stringContaining('more than one YAML document') });
  });

  it('refuses an empty file, a file that is not a map, and a file without builds', () => {
    expect(errorsOf(parsePipeline(''))[0]!.message).toContain('the file is empty');
    expect(errorsOf(parsePipeline('# nothing\n'))[0]!.message).toContain('the file is empty');
    expect(errorsOf(parsePipeline('- a\n- b\n'))[0]).toMatchObject({ line: 1, message: 'the file must be a map with one key, builds' });
    expect(errorsOf(parsePipeline('name: app\n'))).toEqual([
      { line: 1, column: 1, path: 'name', message: "unknown key 'name'; the file has one key, builds" },
      { line: 1, column: 1, path: '', message: 'the file has no builds: map' },
    ]);
    expect(errorsOf(parsePipeline('builds: {}\n'))[0]).toMatchObject({ line: 1, path: 'builds', message: 'builds names no build' });
  });

  it('refuses a tag it does not know rather than guessing', () => {
    expect(errorsOf(parsePipeline(oneBuild('    env: {A: !secret x}\n')))).toEqual([{ line: 5, column: 14, path: '', message: 'Unresolved tag: !secret' }]);
  });

  it('refuses a key that is a collection, and __proto__ as a key anywhere', () => {
    expect(errorsOf(parsePipeline('builds:\n  ? [a, b]\n  : {steps: [{name: a, run: b}]}\n'))).toEqual([
      { line: 2, column: 5, path: '', message: 'a key must be a plain name, not a list, map or alias' },
    ]);
    expect(errorsOf(parsePipeline(oneBuild('    env: {__proto__: x}\n')))).toEqual([{ line: 5, column: 11, path: '', message: 'the key __proto__ is not allowed' }]);
    expect(errorsOf(parsePipeline('builds:\n  __proto__: {steps: [{name: a, run: b}]}\n'))[0]).toMatchObject({ line: 2, column: 3 });
  });

  it('refuses 6,000 builds (about as many as fit under the size cap) with the count alone, without checking each', () => {
    const builds = Array.from({ length: 6000 }, (_, i) => `  b${i}: {x: 1}`).join('\n');
    expect(errorsOf(parsePipeline(`builds:\n${builds}\n`))).toEqual([{ line: 1, column: 1, path: 'builds', message: 'builds names 6000 builds; at most 50 are allowed' }]);
  });
});

describe('a parsed build and the real controller', () => {
  let c: TestController;
  beforeAll(async () => {
    c = await startTestController();
  });
  afterAll(async () => {
    await c.close();
  });

  it('accepts a parsed build as a POST /api/v1/builds body', async () => {
    for (const b of pipelineOf(parsePipeline(EXAMPLE)).builds) {
      const res = await c.post('/api/v1/builds', c.admin, b.build);
      expect(res.statusCode, JSON.stringify(res.json())).toBe(201);
    }
  });

  it('refuses, as the parser does, a body one byte over a limit', async () => {
    const build = { steps: [{ name: 'n', run: 'é'.repeat(LIMITS.maxStepRunBytes / 2) + 'x' }] };
    expect((await c.post('/api/v1/builds', c.admin, build)).statusCode).toBe(400);
    expect(parsePipeline(`builds:\n  ios:\n    steps: [{name: n, run: "${build.steps[0]!.run}"}]\n`).ok).toBe(false);
  });
});

describe('triggers', () => {
  const pipeline = pipelineOf(
    parsePipeline(`builds:
  default:
    steps: [{name: s, run: make}]
  main-and-releases:
    steps: [{name: s, run: make}]
    on: {push: {branches: [main, "release/*"]}}
  deep:
    steps: [{name: s, run: make}]
    on: {push: {branches: ["feature/**"]}, pull_request: {branches: ["release/**"]}}
  tags-only:
    steps: [{name: s, run: make}]
    on: {push: {tags: ["v*"]}}
  every-tag:
    steps: [{name: s, run: make}]
    on: {tag: {}}
  every-pr:
    steps: [{name: s, run: make}]
    on: {pull_request: {}}
  branches-and-tags:
    steps: [{name: s, run: make}]
    on: {push: {branches: [main], tags: ["v*.*"]}}
`),
  );
  const names = (event: PipelineEvent) => triggers(pipeline, event).map((b) => b.name);
  const table: [PipelineEvent, string[]][] = [
    [{ kind: 'push', branch: 'main' }, ['default', 'main-and-releases', 'branches-and-tags']],
    [{ kind: 'push', branch: 'release/1.2' }, ['default', 'main-and-releases']],
    [{ kind: 'push', branch: 'release/1.2/hotfix' }, ['default']],
    [{ kind: 'push', branch: 'feature/a/b/c' }, ['default', 'deep']],
    [{ kind: 'push', branch: 'mainline' }, ['default']],
    [{ kind: 'tag', tag: 'v1' }, ['tags-only', 'every-tag']],
    [{ kind: 'tag', tag: 'v1.2' }, ['tags-only', 'every-tag', 'branches-and-tags']],
    [{ kind: 'tag', tag: 'nightly' }, ['every-tag']],
    [{ kind: 'pull_request', baseBranch: 'main' }, ['default', 'every-pr']],
    [{ kind: 'pull_request', baseBranch: 'release/2/x' }, ['default', 'deep', 'every-pr']],
  ];
  for (const [event, expected] of table) {
    it(`${JSON.stringify(event)} → ${expected.join(', ')}`, () => expect(names(event)).toEqual(expected));
  }

  it('treats a branch name with shell metacharacters as a plain string', () => {
    const branch = 'feat/$(touch /tmp/pwned);`id`|rm -rf ~ && echo "x" > y';
    expect(names({ kind: 'push', branch })).toEqual(['default']);
    const p = pipelineOf(parsePipeline(oneBuild(`    on: {push: {branches: ['feat/$(touch /tmp/pwned);\`id\`|rm -rf ~ && echo "x" > y']}}\n`)));
    expect(triggers(p, { kind: 'push', branch }).map((b) => b.name)).toEqual(['ios']);
    expect(triggers(p, { kind: 'push', branch: 'feat/x' })).toEqual([]);
  });

  it('reads glob characters of regular expressions literally', () => {
    expect(globMatches('release/1.0', 'release/1x0')).toBe(false);
    expect(globMatches('(a|b)+', '(a|b)+')).toBe(true);
    expect(globMatches('(a|b)+', 'a')).toBe(false);
    expect(globMatches('*', 'a/b')).toBe(false);
    expect(globMatches('**', 'a/b')).toBe(true);
    expect(globMatches('a/**/z', 'a/b/c/z')).toBe(true);
    expect(globMatches('a/*/z', 'a/b/c/z')).toBe(false);
  });

  it('matches star-heavy globs without backtracking (a regex of `*a*a…x` froze for a minute)', () => {
    // With the old regex each of these took from 30 s to over a minute; the table takes 255 × 255 steps at most.
    expect(globMatches('*'.repeat(24) + 'x', 'a'.repeat(25))).toBe(false);
    expect(globMatches('*a'.repeat(12) + 'x', 'a'.repeat(40))).toBe(false);
    expect(globMatches('**a'.repeat(12) + 'x', 'a/'.repeat(120) + 'x')).toBe(false);
    expect(globMatches('*a'.repeat(12) + '*', 'a'.repeat(40))).toBe(true);
    expect(globMatches('*'.repeat(200), 'b'.repeat(255))).toBe(true);
  });

  it('agrees with the plain reading of `*` and `**` on every short glob and name', () => {
    // Reference: a direct recursive reading, fine for these lengths.
    const ref = (g: string, n: string): boolean => {
      if (g === '') return n === '';
      if (g.startsWith('**')) return [...Array(n.length + 1).keys()].some((k) => ref(g.replace(/^\*+/, ''), n.slice(k)));
      if (g[0] === '*') return [...Array(n.length + 1).keys()].some((k) => !n.slice(0, k).includes('/') && ref(g.slice(1), n.slice(k)));
      return n[0] === g[0] && ref(g.slice(1), n.slice(1));
    };
    const alphabet = ['a', '/', '*'];
    const words = (len: number, chars: string[]): string[] => (len === 0 ? [''] : words(len - 1, chars).flatMap((w) => chars.map((c) => w + c)));
    const globs = [0, 1, 2, 3, 4].flatMap((l) => words(l, alphabet));
    const names = [0, 1, 2, 3, 4].flatMap((l) => words(l, ['a', '/', 'b']));
    const disagreements = globs.flatMap((g) => names.filter((n) => globMatches(g, n) !== ref(g, n)).map((n) => `${g} ~ ${n}`));
    expect(disagreements).toEqual([]);
  });
});
