/**
 * Node's HTTP modules, loaded with `require`. An ESM `import … from 'node:http'` builds the
 * module's namespace, which reads every export, lazy getters included (`WebSocket`,
 * `MessageEvent`…), and so loads Node's bundled undici and http2 as well: ~3 MB more RSS in
 * the idle agent (docs/benchmarks.md, Agent: the agent's memory by module). `require` reads only what is used.
 */
import type * as Http from 'node:http';
import type * as Https from 'node:https';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** `node:http`, as `require` gives it. */
export const http = require('node:http') as typeof Http;

/** `node:https` (it loads TLS): read when first asked for, by a client of an https URL. */
export const https = (): typeof Https => require('node:https') as typeof Https;
