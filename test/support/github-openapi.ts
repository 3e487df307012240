/**
 * GitHub's own description of its REST API (`@octokit/openapi`, the dereferenced api.github.com
 * document) as validators: the request body and the answers of an operation, checked with ajv.
 * The document is OpenAPI 3.0, whose `nullable: true` is not JSON Schema: it is turned into a
 * `null` alternative before compiling. Loaded once per test file (the document is ~70 MB).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';

type Schema = Record<string, unknown>;
interface Operation {
  requestBody?: { content?: Record<string, { schema?: Schema }> };
  responses: Record<string, { content?: Record<string, { schema?: Schema }> }>;
}
interface Spec {
  paths: Record<string, Record<string, Operation>>;
}

let spec: Spec | null = null;
function load(): Spec {
  if (spec === null) {
    const path = createRequire(import.meta.url).resolve('@octokit/openapi/generated/api.github.com.deref.json');
    spec = JSON.parse(readFileSync(path, 'utf8')) as Spec;
  }
  return spec;
}

/** The operation `method` of `path` (GitHub's template, e.g. `/repos/{owner}/{repo}/check-runs`), or undefined. */
export function operation(method: string, path: string): Operation | undefined {
  return load().paths[path]?.[method.toLowerCase()];
}

/** OpenAPI 3.0 → JSON Schema: `nullable` becomes a `null` alternative (and a `null` enum member). */
export function fromOpenApi(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(fromOpenApi);
  if (typeof schema !== 'object' || schema === null) return schema;
  const out: Schema = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === 'nullable' || k === 'example' || k === 'discriminator') continue;
    // `properties` maps names (which may be anything, `nullable` too) to schemas.
    if (k === 'properties' && typeof v === 'object' && v !== null) out[k] = Object.fromEntries(Object.entries(v).map(([name, s]) => [name, fromOpenApi(s)]));
    else out[k] = fromOpenApi(v);
  }
  if ((schema as Schema).nullable !== true) return out;
  if (typeof out.type === 'string') {
    out.type = [out.type, 'null'];
    if (Array.isArray(out.enum) && !out.enum.includes(null)) out.enum = [...(out.enum as unknown[]), null];
    return out;
  }
  return { anyOf: [{ type: 'null' }, out] };
}

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;
const ajv = addFormats(new Ajv({ strict: false, allErrors: true }));
const compiled = new Map<string, ValidateFunction>();

function validator(key: string, schema: Schema): ValidateFunction {
  let v = compiled.get(key);
  if (v === undefined) {
    v = ajv.compile(fromOpenApi(schema) as Schema);
    compiled.set(key, v);
  }
  return v;
}

const JSON_TYPE = 'application/json';

/** GitHub's error answer (`message`, `documentation_url`), as the spec states it for a 404. */
function basicErrorSchema(): Schema {
  return operation('GET', '/repos/{owner}/{repo}/contents/{path}')!.responses['404']!.content![JSON_TYPE]!.schema!;
}

/** Problems of `body` as the JSON request body of the operation, or [] when it fits. */
export function checkRequest(method: string, path: string, body: unknown): string[] {
  const op = operation(method, path);
  if (op === undefined) return [`${method} ${path} is not in GitHub's OpenAPI description`];
  const schema = op.requestBody?.content?.[JSON_TYPE]?.schema;
  if (schema === undefined) return body === undefined ? [] : [`${method} ${path} takes no JSON body`];
  const v = validator(`req ${method} ${path}`, schema);
  return v(body) ? [] : (v.errors ?? []).map((e) => `request ${method} ${path}: ${e.instancePath || '/'} ${e.message ?? ''}`);
}

/**
 * Problems of `body` as the operation's JSON answer with `status`, or [] when it fits. An error
 * status the spec does not list must still be GitHub's error shape; a success it does not list
 * is a problem.
 */
export function checkResponse(method: string, path: string, status: number, body: unknown): string[] {
  const op = operation(method, path);
  if (op === undefined) return [`${method} ${path} is not in GitHub's OpenAPI description`];
  let schema = op.responses[String(status)]?.content?.[JSON_TYPE]?.schema;
  if (schema === undefined && status >= 400) schema = basicErrorSchema();
  if (schema === undefined) return [`${method} ${path} has no JSON answer ${status} in GitHub's OpenAPI description`];
  const v = validator(`res ${method} ${path} ${status}`, schema);
  return v(body) ? [] : (v.errors ?? []).slice(0, 10).map((e) => `answer ${status} to ${method} ${path}: ${e.instancePath || '/'} ${e.message ?? ''}`);
}
