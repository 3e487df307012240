/**
 * The dashboard's forms: sign in and out, cancel and rerun a build, drain, resume and remove a
 * worker, create and revoke API tokens. Each acts through the service the API uses, records the
 * audit entry, and answers 303 back to the page it came from (a new token answers its page with
 * the secret, once: a secret never travels in a URL). Role and CSRF are checked before the
 * handler runs (src/controller/route.ts); the controls a role may not use are not shown either.
 */
import { ROLES, TOKEN_NAME_PATTERN, type Role } from '../../protocol/domain.ts';
import { ExpoError, isExpoError } from '../../protocol/errors.ts';
import { ROUTES } from '../../protocol/routes.ts';
import { route, type App } from '../route.ts';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type {} from '@fastify/cookie';
import { tokensPage } from './tokens-page.ts';
import type { UiContext } from './context.ts';

/** Sets a cookie through @fastify/cookie (registered by the app for the session cookie it reads). */
const setCookie = (reply: FastifyReply, c: ReturnType<UiContext['sessionCookie']>): FastifyReply => reply.setCookie(c.name, c.value, c.options);

const back = (reply: FastifyReply, to: string): FastifyReply => reply.status(303).header('location', to).send();

export function formRoutes(app: App, ctx: UiContext): void {
  const signInPage = (reply: FastifyReply, status: number, next: string | undefined, error: string | null, name = '') =>
    ctx.page(reply, status, 'login', { title: 'Sign in', nav: '', viewer: null, next: next ?? '', error, name });

  route(app, ROUTES.uiSignInPage, {}, async (req, reply) => signInPage(reply, 200, req.query.next, null));

  route(app, ROUTES.uiSignIn, {}, async (req, reply) => {
    // Login CSRF: a browser always sends Origin on a cross-site POST; a form on another site must
    // not sign this browser in as the attacker's account.
    if (!sameSite(req, ctx.publicUrl)) throw new ExpoError('AUTH_FORBIDDEN', 'sign-in is only accepted from this site\'s own page');
    const { name, password } = req.body;
    try {
      const signed = await ctx.access.signIn(name, password, req.ip);
      setCookie(reply, ctx.sessionCookie(signed.cookieValue, { secure: ctx.secureCookies(req.protocol), maxAgeS: ctx.sessionMaxAgeS }));
      return back(reply, req.query.next ?? '/');
    } catch (err) {
      if (isExpoError(err, 'AUTH_INVALID')) return signInPage(reply, 401, req.query.next, 'Wrong name or password.', name);
      if (isExpoError(err, 'AUTH_RATE_LIMITED')) {
        const retryAfterS = Number((err.details as { retryAfterS?: number }).retryAfterS ?? 60);
        reply.header('retry-after', String(retryAfterS));
        return signInPage(reply, 429, req.query.next, `Too many sign-in attempts: wait ${retryAfterS} seconds and try again.`, name);
      }
      throw err;
    }
  });

  route(app, ROUTES.uiSignOut, {}, async (req, reply) => {
    await ctx.access.signOut(req.principal);
    setCookie(reply, ctx.sessionCookie('', { secure: ctx.secureCookies(req.protocol), maxAgeS: 0 }));
    return back(reply, '/login');
  });

  route(app, ROUTES.uiCancelBuild, {}, async (req, reply) => {
    const b = await ctx.builds.cancel(req.params.id);
    await ctx.access.audit(req.principal, 'build.cancel', b.id, b.status);
    return back(reply, `/builds/${b.id}`);
  });

  route(app, ROUTES.uiRerunBuild, {}, async (req, reply) => {
    const b = await ctx.builds.rerun(req.params.id);
    await ctx.access.audit(req.principal, 'build.rerun', req.params.id, `as ${b.id}`);
    return back(reply, `/builds/${b.id}`);
  });

  route(app, ROUTES.uiDrainWorker, {}, async (req, reply) => {
    await ctx.workers.drain(req.params.id);
    await ctx.access.audit(req.principal, 'worker.drain', req.params.id);
    return back(reply, '/workers');
  });

  route(app, ROUTES.uiResumeWorker, {}, async (req, reply) => {
    await ctx.workers.resume(req.params.id);
    await ctx.access.audit(req.principal, 'worker.resume', req.params.id);
    return back(reply, '/workers');
  });

  route(app, ROUTES.uiRemoveWorker, {}, async (req, reply) => {
    await ctx.workers.remove(req.params.id);
    await ctx.access.audit(req.principal, 'worker.remove', req.params.id);
    return back(reply, '/workers');
  });

  route(app, ROUTES.uiCreateToken, {}, async (req, reply) => {
    const { name, role, expiresInDays } = req.body;
    if (!new RegExp(TOKEN_NAME_PATTERN).test(name)) throw new ExpoError('API_BAD_REQUEST', 'a token name is 1–64 letters, digits, spaces or . _ : @ / -, starting with a letter or digit');
    if (!(ROLES as readonly string[]).includes(role)) throw new ExpoError('API_BAD_REQUEST', `role must be one of ${ROLES.join(', ')}`);
    const days = expiresInDays === undefined || expiresInDays === '' ? undefined : Number(expiresInDays);
    if (days !== undefined && !(Number.isInteger(days) && days >= 1 && days <= 3650)) throw new ExpoError('API_BAD_REQUEST', 'expires in days must be a whole number from 1 to 3650');
    const made = await ctx.access.createToken(req.principal, { name, role: role as Role, ...(days === undefined ? {} : { expiresInDays: days }) });
    return ctx.page(reply, 200, 'tokens', await tokensPage(ctx, req.principal, { name: made.token.name, secret: made.secret }));
  });

  route(app, ROUTES.uiRevokeToken, {}, async (req, reply) => {
    await ctx.access.revokeToken(req.principal, req.params.id);
    return back(reply, '/tokens');
  });
}

/**
 * Whether a sign-in came from this site: no Origin header (a browser sends one on every
 * cross-site POST, so its absence means a same-site or non-browser client), or an Origin equal
 * to the address the request was sent to, or to the public URL. Behind a TLS proxy the request
 * itself is plain http, so this needs `--public-url` or `--trust-proxy` (then req.protocol and
 * req.host are the browser's, from X-Forwarded-Proto/-Host).
 */
function sameSite(req: FastifyRequest, publicUrl: string | null): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  const own = `${req.protocol}://${req.host}`;
  if (origin === own) return true;
  return publicUrl !== null && origin === new URL(publicUrl).origin;
}
