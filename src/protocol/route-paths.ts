/**
 * The schema-free half of the route table: methods, path parameters and `pathOf`, which builds
 * a concrete path from a route. routes.ts (the table, with its TypeBox schemas) re-exports
 * these; a caller that only sends requests — the agent — imports them from here and so never
 * loads TypeBox and the protocol's schemas (about 1,400 modules) while it idles.
 */

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** What `pathOf` needs of a route: its method and its path in Fastify's syntax. */
export interface RoutePath {
  method: HttpMethod;
  path: string;
}

/** The names of a path's parameters: `:id` gives `id`, a final `*` gives `*`. */
type ParamNames<P extends string> = P extends `${string}:${infer Name}/${infer Rest}`
  ? Name | ParamNames<`/${Rest}`>
  : P extends `${string}:${infer Name}`
    ? Name
    : P extends `${string}*`
      ? '*'
      : never;

export type PathParams<R extends { path: string }> = Record<ParamNames<R['path']> | (R['path'] extends `${string}*` ? '*' : never), string>;

/**
 * A concrete path for `route`: each `:param` percent-encoded whole (`encodeURIComponent`), the
 * wildcard (an artifact's relative path) encoded segment by segment with its slashes kept, and
 * `query` (undefined values left out) appended.
 */
export function pathOf<R extends RoutePath>(route: R, params: PathParams<R>, query: Record<string, string | number | undefined> = {}): string {
  const values = params as Record<string, string>;
  const path = route.path
    .replace(/:([A-Za-z0-9_]+)/g, (_m, name: string) => encodeURIComponent(need(values, name, route)))
    .replace(/\*$/, () => need(values, '*', route).split('/').map(encodeURIComponent).join('/'));
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) search.append(k, String(v));
  const q = search.toString();
  return q === '' ? path : `${path}?${q}`;
}

function need(values: Record<string, string>, name: string, route: RoutePath): string {
  const v = values[name];
  if (typeof v !== 'string') throw new TypeError(`pathOf ${route.method} ${route.path}: missing parameter '${name}'`);
  return v;
}
