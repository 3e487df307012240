/**
 * The pipeline file, `.expo-worker.yml`: a repository's named builds and the events that start
 * them (docs/pipeline-file.md). `parsePipeline` reads the text and reports every problem at
 * once, each with its line and column; `triggers` says which builds an event selects.
 *
 * Pure: the controller's webhook service fetches the file and parses it in a worker thread
 * (`pipeline-isolated.ts`).
 *
 * Defences, in the order they apply: the size cap before any parsing; the YAML parser's own
 * errors (syntax, duplicate keys, more than one document, unresolved tags); an alias count cap
 * when the document is turned into values (a "billion laughs" file is refused, not expanded);
 * then the shape of every field, against the API's schema of a build.
 */
import { isAlias, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import { checkBuild, keyText, type PipelineBuild } from './pipeline-build.ts';
import { triggeredBy, type PipelineEvent } from './pipeline-triggers.ts';

export type { PipelineBuild, PipelineBuildBody } from './pipeline-build.ts';
export { SECRET_NAME_PATTERN } from './pipeline-build.ts';
export { globMatches, TRIGGER_LIMITS, type PipelineEvent, type Triggers } from './pipeline-triggers.ts';

export const PIPELINE_LIMITS = {
  /** The largest file read, in bytes of UTF-8: a larger one is refused before it is parsed. */
  maxFileBytes: 256 * 1024,
  /** The most builds one file may name. */
  maxBuilds: 50,
  /** The most aliases (`*name`) the file may use; YAML's "billion laughs" needs many. */
  maxAliasCount: 100,
  /** The most errors reported; past it one last error says how many more there were. */
  maxErrors: 100,
} as const;

/** A build name: the key under `builds:`. */
export const BUILD_NAME_PATTERN = '^[A-Za-z0-9._-]{1,64}$';

export interface Pipeline {
  /** The builds, in the order of the file. */
  builds: PipelineBuild[];
}

/** One problem: its 1-based line and column, the path of the field (`builds.ios.steps[0].name`), and what is wrong. */
export interface PipelineError {
  line: number;
  column: number;
  path: string;
  message: string;
}

export type ParseResult = { ok: true; pipeline: Pipeline } | { ok: false; errors: PipelineError[] };

type Path = (string | number)[];

/** Reads a pipeline file's text: the pipeline, or every problem found (each with its line). */
export function parsePipeline(text: string): ParseResult {
  // A character is at least a byte: the length alone refuses a huge text without counting bytes.
  const bytes = text.length > PIPELINE_LIMITS.maxFileBytes ? Infinity : Buffer.byteLength(text, 'utf8');
  if (bytes > PIPELINE_LIMITS.maxFileBytes) {
    return fail([{ line: 1, column: 1, path: '', message: `the file is larger than ${PIPELINE_LIMITS.maxFileBytes} bytes; it is not read` }]);
  }

  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, version: '1.2', schema: 'core', uniqueKeys: true, merge: false, prettyErrors: false, strict: true });
  const at = (offset: number): { line: number; column: number } => {
    const pos = lineCounter.linePos(offset);
    return { line: pos.line, column: pos.col };
  };
  const yamlErrors = [...doc.errors, ...doc.warnings];
  if (yamlErrors.length > 0) {
    return fail(yamlErrors.map((e) => ({ ...at(e.pos[0]), path: '', message: yamlMessage(e.code, e.message) })));
  }

  // Keys are names: a collection as a key has no name, and `__proto__` is refused by the API's
  // JSON parser (and is a trap in any object it would become a key of).
  const keyErrors: PipelineError[] = [];
  visit(doc, {
    Pair(_, pair) {
      const start = startOf(pair.key) ?? startOf(pair.value) ?? 0;
      if (pair.key !== null && !isScalar(pair.key)) keyErrors.push({ ...at(start), path: '', message: 'a key must be a plain name, not a list, map or alias' });
      else if (isScalar(pair.key) && pair.key.value === '__proto__') keyErrors.push({ ...at(start), path: '', message: 'the key __proto__ is not allowed' });
    },
  });
  if (keyErrors.length > 0) return fail(keyErrors);

  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: PIPELINE_LIMITS.maxAliasCount });
  } catch (err) {
    // yaml throws a ReferenceError for an alias count past the cap; nothing else is expected.
    return fail([{ line: 1, column: 1, path: '', message: `the file cannot be read: ${err instanceof Error ? err.message : String(err)} (aliases are limited to ${PIPELINE_LIMITS.maxAliasCount})` }]);
  }

  const errors: PipelineError[] = [];
  const report = (path: Path, message: string, atKey = false): void => {
    errors.push({ ...at(locate(doc, path, atKey)), path: pathText(path), message });
  };

  if (value === null || value === undefined) {
    report([], 'the file is empty; it needs a builds: map');
    return fail(errors);
  }
  if (!isPlainObject(value)) {
    report([], 'the file must be a map with one key, builds');
    return fail(errors);
  }
  for (const key of Object.keys(value)) if (key !== 'builds') report([key], `unknown key '${keyText(key)}'; the file has one key, builds`, true);
  const builds = value.builds;
  if (!Object.hasOwn(value, 'builds')) {
    report([], 'the file has no builds: map');
  } else if (!isPlainObject(builds)) {
    report(['builds'], 'builds must be a map of named builds');
  } else {
    const names = Object.keys(builds);
    if (names.length === 0) report(['builds'], 'builds names no build');
    if (names.length > PIPELINE_LIMITS.maxBuilds) {
      // The count is the problem to fix first; the builds themselves are not checked one by one.
      report(['builds'], `builds names ${names.length} builds; at most ${PIPELINE_LIMITS.maxBuilds} are allowed`, true);
      return fail(errors);
    }
    const parsed: PipelineBuild[] = [];
    for (const name of names) {
      if (!new RegExp(BUILD_NAME_PATTERN).test(name)) {
        report(['builds', name], `'${keyText(name)}' is not a build name: letters, digits and ._-, at most 64`, true);
        // Its body is not checked: fix the name first (and a hostile name is not repeated in
        // the path of every error under it).
        continue;
      }
      const checked = checkBuild(name, builds[name]);
      for (const p of checked.problems) report(['builds', name, ...p.path], p.message, p.atKey ?? false);
      if (checked.build !== null) parsed.push(checked.build);
    }
    if (errors.length === 0) return { ok: true, pipeline: { builds: parsed } };
  }
  return fail(errors);
}

/** The builds an event selects, in the file's order. */
export function triggers(pipeline: Pipeline, event: PipelineEvent): PipelineBuild[] {
  return pipeline.builds.filter((b) => triggeredBy(b.on, event));
}

function fail(errors: PipelineError[]): ParseResult {
  const sorted = [...errors].sort((a, b) => a.line - b.line || a.column - b.column);
  if (sorted.length <= PIPELINE_LIMITS.maxErrors) return { ok: false, errors: sorted };
  const shown = sorted.slice(0, PIPELINE_LIMITS.maxErrors);
  const last = shown[shown.length - 1]!;
  shown.push({ line: last.line, column: last.column, path: '', message: `and ${sorted.length - PIPELINE_LIMITS.maxErrors} more errors` });
  return { ok: false, errors: shown };
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Words for the yaml package's error codes that need them; its own message otherwise. */
function yamlMessage(code: string, message: string): string {
  if (code === 'DUPLICATE_KEY') return 'a key is given twice in the same map';
  if (code === 'MULTIPLE_DOCS') return 'the file holds more than one YAML document (a second ---); it must hold one';
  return message;
}

/** `builds.ios.steps[0].name`. */
function pathText(path: Path): string {
  return path.map((seg, i) => (typeof seg === 'number' ? `[${seg}]` : i === 0 ? keyText(seg) : `.${keyText(seg)}`)).join('');
}

/**
 * The source offset of the node at `path` (its key with `atKey`), or of the nearest node above it
 * that exists. Aliases are followed to their anchor.
 */
function locate(doc: Document, path: Path, atKey: boolean): number {
  let node: unknown = doc.contents;
  let offset = startOf(node) ?? 0;
  for (const [i, seg] of path.entries()) {
    if (isAlias(node)) node = node.resolve(doc);
    let next: unknown;
    let keyOffset: number | undefined;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && scalarKey(p.key) === String(seg));
      if (pair === undefined) break;
      keyOffset = startOf(pair.key);
      next = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      next = node.items[seg];
      if (next === undefined) break;
    } else {
      break;
    }
    const last = i === path.length - 1;
    offset = (last && atKey ? keyOffset : startOf(next)) ?? keyOffset ?? offset;
    node = next;
  }
  return offset;
}

const scalarKey = (key: unknown): string | undefined => (isScalar(key) ? String(key.value) : undefined);
const startOf = (node: unknown): number | undefined => (node !== null && typeof node === 'object' && 'range' in node ? (node as Node).range?.[0] : undefined);
