/**
 * The dashboard as a Fastify plugin: every `ui*` route of the route table (src/protocol/routes.ts).
 * Pages read through the same services the API uses; forms act through them, record the audit
 * entry and answer 303 back to the page. Registered without fastify-plugin, so what it adds stays
 * inside its own context: form bodies (`@fastify/formbody`) are parsed here only — the JSON API
 * still refuses them with 415 — and its error handler answers these routes in HTML: a caller with
 * no credential (or an expired session) is sent to `/login?next=…`, any other error is a page
 * with its code and message.
 */
import type { FastifyError, FastifyPluginAsync, FastifyRequest } from 'fastify';
import formbody from '@fastify/formbody';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ERROR_CODES, isExpoError, type ErrorCode } from '../../protocol/errors.ts';
import { ROUTES } from '../../protocol/routes.ts';
import { route } from '../route.ts';
import { ASSET_MAX_AGE_S, loadAssets } from './assets.ts';
import { Renderer, uiDir, viewerOf } from './render.ts';
import type { UiContext, UiOptions } from './context.ts';
import { pageRoutes } from './pages.ts';
import { formRoutes } from './forms.ts';

export const uiRoutes: FastifyPluginAsync<UiOptions> = async (fastify, o) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const dir = uiDir();
  const views = new Renderer(`${dir}views`);
  const assets = loadAssets(dir);
  const ctx: UiContext = {
    ...o,
    views,
    viewer: (req) => (req.principal ? viewerOf(req.principal) : null),
    page: (reply, status, name, data) => reply.status(status).type('text/html; charset=utf-8').header('cache-control', 'no-store').send(views.render(name, data)),
  };

  await app.register(formbody, { bodyLimit: 64 * 1024 });

  // The router reads an asterisk-form target (`GET *`) as `/`; it names no page (RFC 9112 §3.2.4: OPTIONS only).
  app.addHook('onRequest', async (req, reply) => {
    if (req.url.startsWith('*')) return reply.status(404).send({ code: 'API_NOT_FOUND', message: `no route ${req.method} *` });
  });

  app.setErrorHandler(async (err: FastifyError, req, reply) => {
    // Not a page (an asset): the app's own handler answers `{code, message}`.
    if (req.routeOptions.config.routeSpec?.page !== true) throw err;
    const { status, code, message } = described(err);
    if (code === 'AUTH_MISSING' || code === 'AUTH_INVALID') {
      const to = `/login?next=${encodeURIComponent(nextOf(req))}`;
      // htmx's XHR would follow a 303 and swap the sign-in page into a table; it navigates on HX-Redirect instead.
      if (req.headers['hx-request'] === 'true') return reply.status(200).header('hx-redirect', to).send();
      return reply.status(303).header('location', to).send();
    }
    if (status >= 500) req.log.error({ err }, 'page failed');
    return ctx.page(reply, status, 'error', { title: `Error ${status}`, nav: '', viewer: ctx.viewer(req), status, code, message });
  });

  route(app, ROUTES.uiAsset, {}, async (req, reply) => {
    const a = assets.get(req.params.file);
    if (!a) return reply.status(404).send({ code: 'API_NOT_FOUND', message: `no asset '${req.params.file}'` });
    reply.header('etag', a.etag).header('cache-control', `public, max-age=${ASSET_MAX_AGE_S}`);
    if (req.headers['if-none-match'] === a.etag) return reply.status(304).send();
    return reply.type(a.contentType).send(a.body);
  });

  pageRoutes(app, ctx);
  formRoutes(app, ctx);
};

/** The status, code and message an error page shows; 5xx details stay in the log. */
function described(err: FastifyError): { status: number; code: ErrorCode; message: string } {
  if (isExpoError(err)) {
    if (err.status >= 500 && err.code !== 'STORE_FULL') return { status: err.status, code: err.code, message: 'internal error; see the controller log' };
    return { status: err.status, code: err.code, message: err.message };
  }
  if (err.validation) return { status: 400, code: 'API_BAD_REQUEST', message: `${err.validationContext ?? 'request'} ${err.message}` };
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return { status: 415, code: 'API_UNSUPPORTED_MEDIA_TYPE', message: 'send the form as application/x-www-form-urlencoded' };
  if (err.statusCode === 413) return { status: 413, code: 'API_BODY_TOO_LARGE', message: 'the form is too large' };
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) return { status: 400, code: 'API_BAD_REQUEST', message: err.message };
  return { status: ERROR_CODES.API_INTERNAL.status, code: 'API_INTERNAL', message: 'internal error; see the controller log' };
}

const NEXT = /^\/(?![/\\])[A-Za-z0-9/._~?&=%+-]{0,512}$/;

/** Where to come back after signing in: the page asked for (a GET), else the overview. */
function nextOf(req: FastifyRequest): string {
  if (req.method !== 'GET') return '/';
  // The live refresh's `fragment` is not a page to come back to.
  const u = new URL(req.url, 'http://here');
  u.searchParams.delete('fragment');
  const url = `${u.pathname}${u.search}`;
  return NEXT.test(url) ? url : '/';
}
