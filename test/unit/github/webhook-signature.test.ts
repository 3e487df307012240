/**
 * Our signature check against octokit's (`@octokit/webhooks-methods`, the reference
 * implementation): the same verdict on the same inputs, signed by octokit's `sign`.
 */
import { createHmac } from 'node:crypto';
import { sign, verify } from '@octokit/webhooks-methods';
import { describe, expect, it } from 'vitest';
import { deliverySummary, isDeliveryId, isEventName, verifyWebhookSignature } from '../../../src/github/webhook-signature.ts';

const SECRET = "It's a Secret to Everybody";
// GitHub's own worked example (docs: "Validating webhook deliveries").
const GITHUB_PAYLOAD = 'Hello, World!';
const GITHUB_SIGNATURE = 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17';

describe('verifyWebhookSignature', () => {
  it("accepts GitHub's documented example", () => {
    expect(verifyWebhookSignature(SECRET, Buffer.from(GITHUB_PAYLOAD), GITHUB_SIGNATURE)).toBe(true);
  });

  it("agrees with octokit's verify on signed, altered, truncated and foreign signatures", async () => {
    const payloads = ['{}', '{"zen":"Keep it logically awesome."}', GITHUB_PAYLOAD, '{"x":"é ü ✓"}'];
    for (const payload of payloads) {
      const good = await sign(SECRET, payload);
      const sha1 = `sha1=${createHmac('sha1', SECRET).update(payload).digest('hex')}`;
      const cases = [
        good,
        good.slice(0, -1),
        `${good.slice(0, -1)}${good.endsWith('0') ? '1' : '0'}`,
        good.toUpperCase(),
        good.replace('sha256=', ''),
        `${good}0`,
        sha1,
        await sign('another secret entirely', payload),
        'sha256=',
        '',
      ];
      for (const signature of cases) {
        const ours = verifyWebhookSignature(SECRET, Buffer.from(payload), signature);
        // octokit throws on an empty signature where we answer false: both refuse it.
        const theirs = await verify(SECRET, payload, signature).catch(() => false);
        expect(ours, `${JSON.stringify(payload)} ${signature}`).toBe(theirs);
        expect(ours).toBe(signature === good);
      }
      expect(verifyWebhookSignature(SECRET, Buffer.from(`${payload} `), good)).toBe(false);
      expect(await verify(SECRET, `${payload} `, good)).toBe(false);
    }
  });

  it('refuses a missing header, and anything when the secret is empty', () => {
    expect(verifyWebhookSignature(SECRET, Buffer.from('{}'), undefined)).toBe(false);
    const emptyKeySig = `sha256=${createHmac('sha256', '').update('{}').digest('hex')}`;
    expect(verifyWebhookSignature('', Buffer.from('{}'), emptyKeySig)).toBe(false);
  });
});

describe('the delivery headers and summary', () => {
  it('takes GUID delivery ids and event names only', () => {
    expect(isDeliveryId('72d3162e-cc78-11e3-81ab-4c9367dc0958')).toBe(true);
    expect(isDeliveryId('72D3162E-CC78-11E3-81AB-4C9367DC0958')).toBe(true);
    for (const bad of [undefined, '', '72d3162e-cc78-11e3-81ab-4c9367dc095', '72d3162e-cc78-11e3-81ab-4c9367dc0958x', '../etc/passwd', ['72d3162e-cc78-11e3-81ab-4c9367dc0958']]) {
      expect(isDeliveryId(bad), String(bad)).toBe(false);
    }
    expect(isEventName('pull_request')).toBe(true);
    expect(isEventName('projects_v2_item')).toBe(true);
    for (const bad of [undefined, '', 'Push', 'push\n', 'a'.repeat(65), ['push']]) expect(isEventName(bad), String(bad)).toBe(false);
  });

  it('keeps a well-formed action and repository name, and nothing else of the payload', () => {
    expect(deliverySummary({ action: 'opened', repository: { full_name: 'octo-org/hello.world' }, secret: 'x' })).toEqual({ action: 'opened', repository: 'octo-org/hello.world' });
    expect(deliverySummary({ ref: 'refs/heads/main' })).toEqual({ action: null, repository: null });
    expect(deliverySummary({ action: 'x'.repeat(65), repository: { full_name: 'a/b/c' } })).toEqual({ action: null, repository: null });
    expect(deliverySummary({ action: 1, repository: 'octo/app' })).toEqual({ action: null, repository: null });
    expect(deliverySummary(null)).toEqual({ action: null, repository: null });
  });
});
