/**
 * One entry of a pipeline file's `builds:` map, checked. The fields a submitted build has
 * (`steps`, `labels`, `timeoutS`, `env`, `artifacts`) are checked against the API's own
 * `CreateBuildBody` schema (TypeBox `Value.Errors`, plus the byte limits the controller's
 * `maxBytes` keyword applies), so a parsed build is exactly what `POST /api/v1/builds` accepts;
 * `secrets`, `on` and `checkout` are the file's own and are checked here.
 */
import { Value } from 'typebox/value';
import type { TSchema } from 'typebox';
import { ARTIFACT_PATTERN, ENV_NAME_PATTERN, LABEL_PATTERN } from '../protocol/domain.ts';
import { CreateBuildBody, LIMITS, type CheckoutOptions } from '../protocol/schemas.ts';
import { checkTriggers, type Triggers } from './pipeline-triggers.ts';

/** A project secret's name, as the file's `secrets:` list names it. */
/**
 * A key of the file as an error names it: at most 64 characters (then `…`), so that a
 * hostile key cannot make the errors a hundred times the size of the file.
 */
export const keyText = (key: unknown): string => {
  const k = String(key);
  return k.length > 64 ? `${k.slice(0, 64)}…` : k;
};

export const SECRET_NAME_PATTERN = '^[A-Z_][A-Z0-9_]{0,127}$';

/** The part of a build that is a `POST /api/v1/builds` body (secret values come from the project, not the file). */
export type PipelineBuildBody = Omit<CreateBuildBody, 'secretEnv' | 'maxAttempts'>;

export interface PipelineBuild {
  /** The key of the entry under `builds:`. */
  name: string;
  /** A valid `CreateBuildBody` (without `secretEnv`, which the project's stored secrets will fill). */
  build: PipelineBuildBody;
  /** Names of the project secrets the build wants in its environment; [] when none. */
  secrets: string[];
  /** The `on:` block; null when absent (the default: every branch push and every pull request). */
  on: Triggers | null;
  /** How the commit is checked out: submodules (false, true: the first level, or `recursive`) and Git LFS files. Default `{submodules: false, lfs: false}`. */
  checkout: CheckoutOptions;
}

/** A problem in one build: the path below the build's entry and what is wrong. */
export interface BuildProblem {
  path: (string | number)[];
  message: string;
  atKey?: boolean;
}

const BODY_KEYS = ['steps', 'labels', 'timeoutS', 'env', 'artifacts'] as const;
const BUILD_KEYS: readonly string[] = [...BODY_KEYS, 'secrets', 'on', 'checkout'];
const CHECKOUT_KEYS: readonly string[] = ['submodules', 'lfs'];

/** Readable words for the API's patterns (a regular expression is no help in an error). */
const PATTERN_WORDS: Record<string, string> = {
  [ENV_NAME_PATTERN]: 'an env name is letters, digits and _, not starting with a digit, at most 128',
  [LABEL_PATTERN]: 'a label is letters, digits and ._:=/-, starting with a letter or digit, at most 64',
  [ARTIFACT_PATTERN]: 'an artifact pattern is a relative path of letters, digits, ._-/ and the globs * ?, without ..',
};

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Checks one build entry; returns the build or its problems (every one). */
export function checkBuild(name: string, value: unknown): { build: PipelineBuild | null; problems: BuildProblem[] } {
  const problems: BuildProblem[] = [];
  if (!isPlainObject(value)) return { build: null, problems: [{ path: [], message: `build '${name}' must be a map with at least steps` }] };

  for (const key of Object.keys(value)) {
    if (!BUILD_KEYS.includes(key)) problems.push({ path: [key], message: `unknown key '${keyText(key)}'; a build has ${BUILD_KEYS.join(', ')}`, atKey: true });
  }
  if (!Object.hasOwn(value, 'steps')) problems.push({ path: [], message: `build '${name}' has no steps`, atKey: true });

  const body: Record<string, unknown> = {};
  for (const key of BODY_KEYS) if (Object.hasOwn(value, key)) body[key] = value[key];
  // Field by field against the API's own schema of each, so every field's problems are found.
  for (const key of Object.keys(body)) {
    const schema = (CreateBuildBody.properties as Record<string, TSchema>)[key] as TSchema & { items?: TSchema };
    const field = body[key];
    if (Array.isArray(field) && schema.items !== undefined) {
      // Item by item: TypeBox stops reporting an array's items after some failures of a union.
      const { items, ...list } = schema;
      problems.push(...schemaProblems(list as TSchema, field, [key]));
      field.forEach((item, i) => problems.push(...schemaProblems(items, item, [key, i])));
    } else {
      problems.push(...schemaProblems(schema, field, [key]));
    }
  }

  const secrets = checkSecrets(value.secrets, isPlainObject(body.env) ? body.env : {}, problems);

  let on: Triggers | null = null;
  if (Object.hasOwn(value, 'on')) {
    const checked = checkTriggers(value.on);
    on = checked.triggers;
    for (const p of checked.problems) problems.push({ ...p, path: ['on', ...p.path] });
  }

  const checkout = checkCheckout(value.checkout, problems);

  // The whole body once more: nothing the field-by-field pass missed gets through.
  if (problems.length === 0 && !Value.Check(CreateBuildBody, body)) problems.push({ path: [], message: 'is not a valid build for the API' });
  if (problems.length > 0) return { build: null, problems };
  return { build: { name, build: body as PipelineBuildBody, secrets, on, checkout }, problems };
}

/** The `checkout:` map: `submodules: false | true | recursive`, `lfs: false | true`, both optional. */
function checkCheckout(value: unknown, problems: BuildProblem[]): CheckoutOptions {
  const checkout: CheckoutOptions = { submodules: false, lfs: false };
  if (value === undefined) return checkout;
  if (!isPlainObject(value)) {
    problems.push({ path: ['checkout'], message: 'must be a map of submodules and lfs' });
    return checkout;
  }
  for (const key of Object.keys(value)) {
    if (!CHECKOUT_KEYS.includes(key)) problems.push({ path: ['checkout', key], message: `unknown key '${keyText(key)}'; checkout has ${CHECKOUT_KEYS.join(', ')}`, atKey: true });
  }
  if (Object.hasOwn(value, 'submodules')) {
    const v = value.submodules;
    if (v === true || v === false || v === 'recursive') checkout.submodules = v;
    else problems.push({ path: ['checkout', 'submodules'], message: 'must be false, true (the first level) or recursive' });
  }
  if (Object.hasOwn(value, 'lfs')) {
    if (typeof value.lfs === 'boolean') checkout.lfs = value.lfs;
    else problems.push({ path: ['checkout', 'lfs'], message: 'must be true or false' });
  }
  return checkout;
}

function checkSecrets(value: unknown, env: Record<string, unknown>, problems: BuildProblem[]): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    problems.push({ path: ['secrets'], message: 'must be a list of secret names' });
    return [];
  }
  if (value.length > LIMITS.maxEnvVars) {
    problems.push({ path: ['secrets'], message: `must hold at most ${LIMITS.maxEnvVars} names (this one has ${value.length})` });
    return [];
  }
  const seen = new Set<string>();
  const names: string[] = [];
  value.forEach((name: unknown, i) => {
    if (typeof name !== 'string' || !new RegExp(SECRET_NAME_PATTERN).test(name)) {
      problems.push({ path: ['secrets', i], message: 'a secret name is upper-case letters, digits and _, not starting with a digit, at most 128' });
    } else if (seen.has(name)) {
      problems.push({ path: ['secrets', i], message: `'${name}' is listed twice` });
    } else if (Object.hasOwn(env, name)) {
      problems.push({ path: ['secrets', i], message: `'${name}' is in env too; give each name once` });
    } else {
      seen.add(name);
      names.push(name);
    }
  });
  return names;
}

interface SchemaError {
  keyword: string;
  schemaPath: string;
  instancePath: string;
  params: Record<string, unknown>;
  message: string;
}

const pathOf = (pointer: string): string[] =>
  pointer === '' ? [] : pointer.slice(1).split('/').map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));

/** TypeBox's errors for `value` against `schema`, in words, plus the UTF-8 byte limits (`maxBytes`). */
function schemaProblems(schema: TSchema, value: unknown, base: (string | number)[]): BuildProblem[] {
  const errors = [...Value.Errors(schema, value)] as unknown as SchemaError[];
  const out: BuildProblem[] = [];
  const anyOfAt = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  for (const e of errors) {
    const path = [...base, ...indexed(pathOf(e.instancePath), value)];
    if (e.keyword === 'additionalProperties') continue; // each extra key has its own error below
    if (e.keyword === 'boolean' && e.schemaPath.endsWith('/additionalProperties')) {
      const key = path[path.length - 1];
      const inEnv = base[0] === 'env' && path.length === 2;
      out.push({ path, atKey: true, message: inEnv ? `'${keyText(key)}' is not a valid env name: ${PATTERN_WORDS[ENV_NAME_PATTERN]}` : `unknown key '${keyText(key)}'` });
      continue;
    }
    if (e.keyword === 'anyOf') {
      // An artifact is a pattern or {path, required}: neither form at all is said once, here.
      if (branchOf(valueAt(value, pathOf(e.instancePath))) < 0) out.push({ path, message: 'an artifact is a pattern string or {path, required}' });
      continue;
    }
    const branch = /\/anyOf\/(\d+)/.exec(e.schemaPath);
    if (branch !== null) {
      // Keep only the problems of the form the item has (a string's, or an object's).
      const at = [...anyOfAt].filter((p) => e.instancePath === p || e.instancePath.startsWith(`${p}/`)).sort((a, b) => b.length - a.length)[0] ?? '';
      const form = branchOf(valueAt(value, pathOf(at)));
      if (form !== Number(branch[1]) || (e.keyword === 'type' && e.instancePath === at)) continue;
    }
    out.push({ path, message: wordsFor(e) });
  }
  out.push(...byteProblems(schema, value, base));
  // One problem per field: a too-long artifact pattern fails both its length and its pattern.
  const seen = new Set<string>();
  return out.filter((p) => {
    const key = JSON.stringify(p.path);
    return seen.has(key) ? false : (seen.add(key), true);
  });
}

/** Which form of an artifact a value is: 0 a pattern string, 1 an object, -1 neither. */
const branchOf = (item: unknown): number => (typeof item === 'string' ? 0 : isPlainObject(item) ? 1 : -1);

function wordsFor(e: SchemaError): string {
  if (e.keyword === 'pattern') return PATTERN_WORDS[String(e.params.pattern)] ?? e.message;
  if (e.keyword === 'type' && e.params.type === 'string') return 'must be a string (quote it)';
  if (e.keyword === 'minLength' && e.params.limit === 1) return 'must not be empty';
  if (e.keyword === 'uniqueItems') return 'must not repeat an item';
  const limit = e.params.limit;
  if (e.keyword === 'minItems') return `must hold at least ${String(limit)} item${limit === 1 ? '' : 's'}`;
  if (e.keyword === 'maxLength') return `must be at most ${String(limit)} characters`;
  if (e.keyword === 'maxItems') return `must hold at most ${String(limit)} items`;
  if (e.keyword === 'maxProperties') return `must hold at most ${String(limit)} entries`;
  if (e.keyword === 'minimum') return `must be at least ${String(limit)}`;
  if (e.keyword === 'maximum') return `must be at most ${String(limit)}`;
  if (e.keyword === 'required') return `must have ${(e.params.requiredProperties as string[]).join(', ')}`;
  if (e.keyword === 'type' && e.params.type === 'object') return 'must be a map';
  if (e.keyword === 'type' && e.params.type === 'array') return 'must be a list';
  if (e.keyword === 'type' && e.params.type === 'integer') return 'must be a whole number';
  return e.message;
}

/** Array indices as numbers, so paths read `steps[0]`. */
function indexed(path: string[], root: unknown): (string | number)[] {
  let node = root;
  return path.map((seg) => {
    const isIndex = Array.isArray(node);
    node = isIndex ? (node as unknown[])[Number(seg)] : isPlainObject(node) ? node[seg] : undefined;
    return isIndex ? Number(seg) : seg;
  });
}

function valueAt(root: unknown, path: string[]): unknown {
  let node = root;
  for (const seg of path) node = Array.isArray(node) ? node[Number(seg)] : isPlainObject(node) ? node[seg] : undefined;
  return node;
}

/** The `maxBytes` keyword, which TypeBox does not know: strings longer in UTF-8 than the schema allows. */
function byteProblems(schema: TSchema, value: unknown, path: (string | number)[]): BuildProblem[] {
  const s = schema as Record<string, unknown>;
  if (typeof value === 'string') {
    const limit = s.maxBytes;
    if (typeof limit === 'number' && Buffer.byteLength(value, 'utf8') > limit) return [{ path, message: `must be at most ${limit} bytes of UTF-8` }];
    return [];
  }
  const out: BuildProblem[] = [];
  if (Array.isArray(value) && isPlainObject(s.items)) {
    value.forEach((item, i) => out.push(...byteProblems(s.items as TSchema, item, [...path, i])));
  } else if (isPlainObject(value)) {
    const props = isPlainObject(s.properties) ? s.properties : {};
    const patterns = isPlainObject(s.patternProperties) ? Object.values(s.patternProperties) : [];
    for (const [key, v] of Object.entries(value)) {
      const sub = (Object.hasOwn(props, key) ? props[key] : patterns[0]) as TSchema | undefined;
      if (sub !== undefined) out.push(...byteProblems(sub, v, [...path, key]));
    }
  }
  return out;
}
