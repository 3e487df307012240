/** Helpers for the dashboard's tests: a running build to write a log into, and the page checks every test makes. */
import { expect } from 'vitest';
import { AccessService } from '../../src/controller/access-service.ts';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import type { TestController } from './support.ts';

/** The CSP every answer carries. */
export const CSP = "default-src 'self';script-src 'self';style-src 'self';img-src 'self' data:;connect-src 'self';object-src 'none';base-uri 'none';frame-ancestors 'none';form-action 'self'";

/** Whether the access work has landed (its service no longer a skeleton): the token, audit and session tests need it. */
export async function accessIsWritten(c: TestController): Promise<boolean> {
  return new AccessService({ store: c.store, now: Date.now }).listAudit({}).then(
    () => true,
    () => false,
  );
}

/** No inline script (every `<script>` has a src and no body), no `style=` attribute, no `<style>` element. */
export function expectSafeHtml(html: string, where: string): void {
  for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)) {
    expect(m[1], `${where}: script without src`).toMatch(/\bsrc="\/ui\/[a-z_.]+"/);
    expect(m[2], `${where}: inline script`).toBe('');
  }
  expect(html, `${where}: style attribute`).not.toMatch(/<[^>]+\sstyle\s*=/i);
  expect(html, `${where}: style element`).not.toMatch(/<style\b/i);
}

/** Enrols `workerId` (with `labels`), submits a build it matches and claims it: the build runs and its log can be written. */
export async function runningBuild(c: TestController, workerId: string, labels: string[] = [], body: Record<string, unknown> = {}) {
  const w = await c.enrol(workerId, labels);
  const submitted = await c.submit({ labels, ...body });
  const claim = await c.poll(workerId, w.auth);
  if (claim === null || claim.build.id !== submitted.id) throw new Error('the worker did not claim the build');
  const id = submitted.id;
  const phase = await c.post(pathOf(ROUTES.phase, { id }), w.auth, { lease: claim.lease, phase: 'running' });
  if (phase.statusCode !== 200) throw new Error(`phase: ${phase.statusCode}`);
  let offset = 0;
  return {
    id,
    worker: w,
    append: async (data: string) => {
      const res = await c.post(pathOf(ROUTES.appendLog, { id }), w.auth, { lease: claim.lease, offset, data });
      if (res.statusCode !== 200) throw new Error(`append: ${res.statusCode} ${JSON.stringify(res.json())}`);
      offset += Buffer.byteLength(data);
    },
    /** Reports that step `index` starts now, as the agent does. */
    stepStarted: async (index: number) => {
      const res = await c.post(pathOf(ROUTES.phase, { id }), w.auth, { lease: claim.lease, phase: 'running', step: index });
      if (res.statusCode !== 200) throw new Error(`step start: ${res.statusCode} ${JSON.stringify(res.json())}`);
    },
    complete: async (result: Record<string, unknown>) => {
      const res = await c.post(pathOf(ROUTES.complete, { id }), w.auth, { lease: claim.lease, ...result });
      if (res.statusCode !== 200) throw new Error(`complete: ${res.statusCode} ${JSON.stringify(res.json())}`);
    },
  };
}
