/**
 * What the GitHub tests share: GitHub's own example payloads (`@octokit/webhooks-examples`), a
 * signed delivery sent to an app, and a bounded wait for work the controller does after its
 * answers (deliveries, reports).
 */
import { createRequire } from 'node:module';
import { sign } from '@octokit/webhooks-methods';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import type { ControllerApp } from '../../src/controller/app.ts';

interface Definition {
  name: string;
  examples: Record<string, unknown>[];
}
const EXAMPLES = createRequire(import.meta.url)('@octokit/webhooks-examples') as Definition[];

/** A fresh copy of the first example of `event` that `pick` accepts. */
export const example = (event: string, pick: (e: Record<string, unknown>) => boolean): Record<string, unknown> =>
  structuredClone(EXAMPLES.find((d) => d.name === event)!.examples.find(pick)!);

/** Sends `payload` as a delivery of `event` signed with `secret`; the raw answer. */
export async function sendSigned(app: ControllerApp['app'], secret: string, event: string, payload: Record<string, unknown>, id: string) {
  const body = JSON.stringify(payload);
  return app.inject({
    method: 'POST',
    url: pathOf(ROUTES.githubWebhook, {}),
    headers: { 'content-type': 'application/json', 'x-github-event': event, 'x-github-delivery': id, 'x-hub-signature-256': await sign(secret, body) },
    payload: body,
  });
}

/** Waits until `cond` holds, reading every `everyMs`, failing after `timeoutMs` with what was last seen. */
export async function until<T>(what: string, read: () => T | Promise<T>, cond: (v: T) => boolean, timeoutMs: number, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let v = await read();
  while (!cond(v)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)?.slice(0, 2000)}`);
    await new Promise((r) => setTimeout(r, everyMs));
    v = await read();
  }
  return v;
}
