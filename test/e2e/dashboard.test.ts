/**
 * The dashboard in a real Chromium against the whole system — the controller process, the real
 * agent and the tart simulator: an operator signs in, watches a build's log grow live without a
 * reload, sees the worker busy, cancels the build and sees the worker idle again, reruns it,
 * makes an API token that works and revokes it; a viewer finds no cancel button and the API
 * answers them 403. Hostile step names and log lines render as text and run nothing. Screenshots
 * of the main pages are saved (to $EXPO_SCREENSHOT_DIR — docs/screenshots/ refreshes the
 * README's — or a temp dir removed afterwards).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import { launchBrowser, type BrowserSession } from '../support/browser.ts';
import { E2E_TEST_TIMEOUT_MS, FINAL, startFarm, WAIT, type Farm } from '../support/farm.ts';

const OPERATOR = { name: 'olga', password: 'operator-password-0123' };
const VIEWER = { name: 'vic', password: 'viewer-password-01234' };
/** Long enough for every wait of a busy machine (a sign-in hashes with scrypt at N = 2^17). */
const UI_WAIT_MS = WAIT.buildMs;

let farm: Farm;
let browser: BrowserSession;
let page: Page;
let shots: string;
const ownShots = process.env.EXPO_SCREENSHOT_DIR === undefined;
const dialogs: string[] = [];

beforeAll(async () => {
  shots = process.env.EXPO_SCREENSHOT_DIR ?? mkdtempSync(join(tmpdir(), 'expo-shots-'));
  farm = await startFarm();
  for (const [u, role] of [
    [OPERATOR, 'operator'],
    [VIEWER, 'viewer'],
  ] as const) {
    const res = await farm.api(ROUTES.createUser.method, pathOf(ROUTES.createUser, {}), { name: u.name, role, password: u.password });
    if (res.status !== 201) throw new Error(`user ${u.name}: ${res.status} ${res.text}`);
  }
  browser = await launchBrowser({ timeoutMs: UI_WAIT_MS });
  page = await browser.newPage();
  page.setDefaultTimeout(UI_WAIT_MS);
  // No alert, confirm or prompt may ever open: one would be script run from hostile text.
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
}, E2E_TEST_TIMEOUT_MS);

afterAll(async () => {
  await browser?.close();
  await farm?.stop();
  if (ownShots && shots !== undefined) rmSync(shots, { recursive: true, force: true });
});

const url = (path: string) => `${farm.controller.url}${path}`;

async function signIn(who: { name: string; password: string }, next: string): Promise<void> {
  await page.goto(url(next));
  // Not signed in: sent to the sign-in page, which comes back to `next` afterwards.
  await page.waitForURL((u) => u.pathname === '/login');
  await page.fill('form#signin input[name=name]', who.name);
  await page.fill('form#signin input[name=password]', who.password);
  await Promise.all([page.waitForURL((u) => u.pathname === next), page.click('form#signin [type=submit]')]);
  await expect.poll(() => page.textContent('#whoami'), { timeout: UI_WAIT_MS }).toContain(who.name);
}

async function signOut(): Promise<void> {
  await Promise.all([page.waitForURL((u) => u.pathname === '/login'), page.click('form#signout [type=submit]')]);
}

const apiWith = async (method: 'GET' | 'POST', path: string, key: string) => {
  const res = await request(url(path), { method, headers: { authorization: `Bearer ${key}`, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) }, body: method === 'POST' ? '{}' : undefined });
  return { status: res.statusCode, body: await res.body.text() };
};

describe('the dashboard in Chromium', () => {
  it('an operator watches a build live, sees the worker busy, cancels, sees it idle, reruns; tokens work until revoked; a viewer cannot cancel', async () => {
    // Hostile text everywhere a person can put it: the step's name and the log's lines.
    const id = await farm.submit({
      steps: [
        {
          name: '<img src=x onerror=alert(1)>',
          run: 'for i in $(seq 1 400); do echo "line $i <script>alert(2)</script>"; printf "\\033[32mgreen %s\\033[0m\\n" "$i"; sleep 0.3; done',
        },
      ],
    });
    await signIn(OPERATOR, `/builds/${id}`);

    // The log grows while we watch, in the same page (a marker set in the page survives: no reload).
    await page.evaluate(() => {
      (globalThis as unknown as { __still: boolean }).__still = true;
    });
    await expect.poll(() => page.textContent('pre#log'), { timeout: UI_WAIT_MS }).toContain('line 3 <script>');
    const first = (await page.textContent('pre#log'))!.length;
    await expect.poll(async () => (await page.textContent('pre#log'))!.length, { timeout: UI_WAIT_MS }).toBeGreaterThan(first + 100);
    expect(await page.evaluate(() => (globalThis as unknown as { __still?: boolean }).__still)).toBe(true);
    // The running step's duration follows the build live and ticks, in the same page.
    const stepDuration = () => page.textContent('#steps li[data-step="0"] .duration');
    await expect.poll(stepDuration, { timeout: UI_WAIT_MS }).toMatch(/^running for \d/);
    const shownAt = await stepDuration();
    await expect.poll(stepDuration, { timeout: UI_WAIT_MS }).not.toBe(shownAt);
    expect(await stepDuration()).toMatch(/^running for \d/);
    // ANSI colours are rendered as classes, the escape codes themselves never shown.
    expect(await page.locator('pre#log [class*="ansi-green"]').count()).toBeGreaterThan(0);
    expect(await page.textContent('pre#log')).not.toContain('\u001b[');
    // The hostile step name is text.
    expect(await page.textContent('body')).toContain('<img src=x onerror=alert(1)>');
    await browser.screenshot(page, shots, 'build-running');

    // The worker is busy with this build.
    await page.goto(url('/workers'));
    const row = page.locator('tr[data-worker-id="mac-1"]');
    await expect.poll(() => row.locator('td.status').textContent(), { timeout: UI_WAIT_MS }).toContain('busy');
    expect(await row.locator('td.current-build').textContent()).toContain(id);
    await browser.screenshot(page, shots, 'workers');

    // Cancel from the build page; the status turns to cancelled.
    await page.goto(url(`/builds/${id}`));
    await page.click('form#cancel [type=submit]');
    await expect.poll(() => page.textContent('#build-status'), { timeout: UI_WAIT_MS }).toContain('cancelled');
    expect((await farm.build(id)).status).toBe('cancelled');

    // The workers page turns idle by itself (htmx refresh, no reload).
    await page.goto(url('/workers'));
    await page.evaluate(() => {
      (globalThis as unknown as { __still: boolean }).__still = true;
    });
    await expect.poll(() => row.locator('td.status').textContent(), { timeout: UI_WAIT_MS }).toContain('idle');
    expect(await page.evaluate(() => (globalThis as unknown as { __still?: boolean }).__still)).toBe(true);

    // Rerun: a new build of the same work, on its own page.
    await page.goto(url(`/builds/${id}`));
    await Promise.all([page.waitForURL((u) => /^\/builds\/[a-z2-7]{16}$/.test(u.pathname) && u.pathname !== `/builds/${id}`), page.click('form#rerun [type=submit]')]);
    const rerun = new URL(page.url()).pathname.split('/')[2]!;
    expect((await farm.build(rerun)).source?.rerunOf ?? rerun).toBeTruthy();
    await farm.api(ROUTES.cancelBuild.method, pathOf(ROUTES.cancelBuild, { id: rerun }), {});

    // The builds list and the overview.
    await page.goto(url('/builds'));
    expect(await page.locator(`tr[data-build-id="${id}"] td.status`).textContent()).toContain('cancelled');
    await browser.screenshot(page, shots, 'builds');
    await page.goto(url('/'));
    await browser.screenshot(page, shots, 'overview');

    // A token made on the Tokens page works with the API, until it is revoked there.
    await page.goto(url('/tokens'));
    await page.fill('form#create-token input[name=name]', 'ci-read');
    await page.selectOption('form#create-token select[name=role]', 'viewer');
    await page.click('form#create-token [type=submit]');
    const secret = (await page.textContent('#new-token-secret'))!.trim();
    expect(secret).toMatch(/^ewt_/);
    expect((await apiWith('GET', pathOf(ROUTES.getBuild, { id }), secret)).status).toBe(200);
    await page.goto(url('/tokens'));
    expect(await page.textContent('body')).not.toContain(secret);
    await browser.screenshot(page, shots, 'tokens');
    await page.click('table#tokens form.revoke [type=submit]');
    await expect.poll(async () => (await apiWith('GET', pathOf(ROUTES.getBuild, { id }), secret)).status, { timeout: UI_WAIT_MS }).toBe(401);

    // A viewer: no cancel button, and the API refuses the cancel even with the session's CSRF token.
    await signOut();
    const running = await farm.submit({ steps: [{ name: 'wait', run: 'sleep 60' }] });
    await signIn(VIEWER, `/builds/${running}`);
    expect(await page.locator('form#cancel').count()).toBe(0);
    expect(await page.locator('form#rerun').count()).toBe(0);
    const refused = await page.evaluate(async (path) => {
      const doc = (globalThis as unknown as { document: { querySelector(s: string): { value: string } } }).document;
      const csrf = doc.querySelector('form#signout input[name=_csrf]').value;
      const res = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': csrf }, body: '{}' });
      return { status: res.status, body: (await res.json()) as { code: string } };
    }, pathOf(ROUTES.cancelBuild, { id: running }));
    expect(refused).toEqual({ status: 403, body: expect.objectContaining({ code: 'AUTH_FORBIDDEN' }) });
    expect(FINAL(await farm.build(running))).toBe(false);
    await farm.api(ROUTES.cancelBuild.method, pathOf(ROUTES.cancelBuild, { id: running }), {});

    expect(dialogs).toEqual([]);
  }, E2E_TEST_TIMEOUT_MS);
});
