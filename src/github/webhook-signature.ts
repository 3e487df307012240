/**
 * Verifying a GitHub webhook delivery: the `X-Hub-Signature-256` header is `sha256=` and the
 * lower-case hex HMAC-SHA256 of the request's raw body under the webhook's secret
 * (https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries). It is
 * checked on the bytes as received, before anything parses them, and compared in constant time.
 * The SHA-1 `X-Hub-Signature` header is never accepted.
 *
 * Also the shape checks of the delivery's other headers, so that nothing unchecked reaches a log
 * line or the store.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

const SIGNATURE = /^sha256=([0-9a-f]{64})$/;

/** Whether `header` has the signature's shape (`sha256=` and 64 lower-case hex digits), before any body is read. */
export const isSignatureHeader = (header: string): boolean => SIGNATURE.test(header);

/**
 * Whether `header` is the signature of `body` under `secret`. False for a missing header, a
 * SHA-1 one, a truncated or otherwise malformed one, and a wrong one; the comparison of the two
 * 32-byte digests takes the same time wherever they differ.
 */
export function verifyWebhookSignature(secret: string, body: Buffer, header: string | undefined): boolean {
  if (secret === '' || header === undefined) return false;
  const m = SIGNATURE.exec(header);
  if (!m) return false;
  const expected = createHmac('sha256', secret).update(body).digest();
  return timingSafeEqual(Buffer.from(m[1]!, 'hex'), expected);
}

/** `X-GitHub-Delivery`: a GUID (GitHub sends `72d3162e-cc78-11e3-81ab-4c9367dc0958`). */
const DELIVERY_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const isDeliveryId = (v: unknown): v is string => typeof v === 'string' && DELIVERY_ID.test(v);

/** `X-GitHub-Event`: GitHub's event names are lower-case words and digits joined by `_` (`push`, `projects_v2_item`). */
const EVENT_NAME = /^[a-z][a-z0-9_]{0,63}$/;

export const isEventName = (v: unknown): v is string => typeof v === 'string' && EVENT_NAME.test(v);

/** A repository's `full_name` (`owner/name`), as GitHub allows them. */
const FULL_NAME = /^[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,100}$/;

/** What of a parsed payload explains a delivery: its `action` and `repository.full_name`, when present and well-formed. */
export function deliverySummary(payload: unknown): { action: string | null; repository: string | null } {
  const o = typeof payload === 'object' && payload !== null ? (payload as Record<string, unknown>) : {};
  const action = typeof o.action === 'string' && /^[a-z0-9_]{1,64}$/.test(o.action) ? o.action : null;
  const repo = typeof o.repository === 'object' && o.repository !== null ? (o.repository as Record<string, unknown>).full_name : undefined;
  return { action, repository: typeof repo === 'string' && FULL_NAME.test(repo) ? repo : null };
}
