/**
 * `POST /webhooks/github`: GitHub's webhook deliveries (and, for the admin,
 * `GET /api/v1/github/deliveries`: what was recorded of them). No Bearer key (the route table's
 * `github-signature` scope): the `X-Hub-Signature-256` HMAC of the raw body under the
 * configured secret is the credential, checked before a byte of the body is parsed. Without a
 * secret configured every delivery is refused (503 `WEBHOOK_NOT_CONFIGURED`), never accepted
 * unsigned.
 *
 * Order: no secret → 503; no well-formed signature header → 401 before the body is read; more
 * than WEBHOOK_READS_AT_ONCE bodies being received → 503 `WEBHOOK_BUSY`; not `application/json`
 * → 415 (form-encoded deliveries are refused: choose `application/json` in GitHub's settings);
 * over 25 MB → 413; a body not whole within WEBHOOK_ARRIVAL_MS → connection closed; bad signature → 401
 * `WEBHOOK_SIGNATURE`; then the headers' shapes (400), a `ping` (200), the JSON (400), and the
 * delivery recorded (202). Nothing is recorded before the signature holds.
 */
import type { FastifyBaseLogger, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ExpoError } from '../../protocol/errors.ts';
import { ROUTES } from '../../protocol/routes.ts';
import { isDeliveryId, isEventName, isSignatureHeader, verifyWebhookSignature } from '../../github/webhook-signature.ts';
import { route } from '../route.ts';
import type { WebhookService } from '../webhook-service.ts';

/** GitHub caps a delivery's payload at 25 MB (https://docs.github.com/en/webhooks/webhook-events-and-payloads). */
export const WEBHOOK_BODY_BYTES = 25 * 1024 * 1024;

/**
 * How many deliveries are read at once, and how long one may take to arrive. Anyone can send a
 * body (the signature is checked once it is whole), so these bound what an unauthenticated
 * sender can make the controller hold: 4 × 25 MB, for at most 30 s each. GitHub sends one
 * delivery at a time per hook and each in well under a second.
 */
export const WEBHOOK_READS_AT_ONCE = 4;
export const WEBHOOK_ARRIVAL_MS = 30_000;

/** While refusals repeat (no secret, too many at once), one warning per interval says so. */
const REFUSAL_LOG_INTERVAL_MS = 60_000;

const SIGNATURE_REFUSED = (): ExpoError =>
  new ExpoError('WEBHOOK_SIGNATURE', 'missing or wrong X-Hub-Signature-256: expected sha256=<hex HMAC-SHA256 of the body under the webhook secret>');

export interface GithubRoutesOptions {
  /** The webhook secret; null when none is configured. */
  secret: string | null;
  /** How long a delivery's body may take to arrive, in ms. Default WEBHOOK_ARRIVAL_MS (30 s). */
  arrivalMs?: number;
  webhooks: WebhookService;
}

export const githubRoutes: FastifyPluginAsync<GithubRoutesOptions> = async (fastify, o) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  let reading = 0;
  const refusals = { loggedAt: Number.NEGATIVE_INFINITY, unlogged: 0 };
  const refuse = (log: FastifyBaseLogger, err: ExpoError): never => {
    const now = Date.now();
    if (now - refusals.loggedAt >= REFUSAL_LOG_INTERVAL_MS) {
      log.warn({ code: err.code, refusedSinceLastLine: refusals.unlogged }, `webhook delivery refused: ${err.message}`);
      refusals.loggedAt = now;
      refusals.unlogged = 0;
    } else refusals.unlogged++;
    throw err;
  };
  // The signature is over the bytes as sent: for this plugin's route the JSON body reaches the
  // handler as the raw Buffer, unparsed; any other type is 415.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: WEBHOOK_BODY_BYTES }, (_req, body, done) => done(null, body));

  route(
    app,
    ROUTES.githubWebhook,
    {
      bodyLimit: WEBHOOK_BODY_BYTES,
      // Before the body is read: a controller without a secret reads no 25 MB bodies either.
      onRequest: async (req, reply) => {
        if (o.secret === null) refuse(req.log, new ExpoError('WEBHOOK_NOT_CONFIGURED', 'this controller has no GitHub webhook secret: start it with --github-secret (EXPO_CONTROLLER_GITHUB_SECRET)'));
        // A delivery without a well-formed signature header is refused before its body is read.
        const signature = req.headers['x-hub-signature-256'];
        if (typeof signature !== 'string' || !isSignatureHeader(signature)) refuse(req.log, SIGNATURE_REFUSED());
        if (reading >= WEBHOOK_READS_AT_ONCE) refuse(req.log, new ExpoError('WEBHOOK_BUSY', `${WEBHOOK_READS_AT_ONCE} webhook deliveries are already being received; redeliver shortly`));
        reading++;
        let done = false;
        const release = (): void => {
          if (done) return;
          done = true;
          reading--;
          clearTimeout(deadline);
        };
        // A sender that trickles its body is cut off: its connection goes, and its slot with it.
        const deadline = setTimeout(() => {
          if (!req.raw.complete) req.raw.destroy();
        }, o.arrivalMs ?? WEBHOOK_ARRIVAL_MS);
        reply.raw.once('close', release);
        req.raw.once('close', () => {
          if (!req.raw.complete) release();
        });
      },
    },
    async (req, reply) => {
      const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const signature = req.headers['x-hub-signature-256'];
      if (!verifyWebhookSignature(o.secret ?? '', body, typeof signature === 'string' ? signature : undefined)) refuse(req.log, SIGNATURE_REFUSED());
      const event = req.headers['x-github-event'];
      if (!isEventName(event)) throw new ExpoError('API_BAD_REQUEST', 'missing or malformed X-GitHub-Event header');
      const id = req.headers['x-github-delivery'];
      if (!isDeliveryId(id)) throw new ExpoError('API_BAD_REQUEST', 'missing or malformed X-GitHub-Delivery header: expected a GUID');
      if (event === 'ping') {
        req.log.info({ delivery: id }, 'webhook ping');
        return reply.status(200).send({ ok: true });
      }
      let payload: unknown;
      try {
        payload = JSON.parse(body.toString('utf8'));
      } catch {
        throw new ExpoError('API_BAD_REQUEST', 'the webhook body is not valid JSON');
      }
      if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) throw new ExpoError('API_BAD_REQUEST', 'the webhook body is not a JSON object');
      const delivery = id.toLowerCase();
      const { duplicate } = await o.webhooks.accept({ id: delivery, event }, payload as Record<string, unknown>);
      return reply.status(202).send(duplicate ? { accepted: true, delivery, duplicate: true } : { accepted: true, delivery });
    },
  );

  route(app, ROUTES.listDeliveries, {}, async (req) => {
    const deliveries = await o.webhooks.list(Number(req.query.limit ?? 100));
    // `work` is the processor's note to itself, not part of the view.
    return { deliveries: deliveries.map(({ work: _work, ...d }) => ({ ...d, receivedAt: new Date(d.receivedAt).toISOString() })) };
  });
};
