/**
 * The Chromium harness (test/support/browser.ts) end to end: a real HTTP server on 127.0.0.1
 * serves the overview's SVG plots in an HTML page under a strict CSP (no inline style or script);
 * Chromium opens it, the test reads the text back, finds no CSP violation, takes a full-page
 * screenshot, and after `close()` no Chromium process of that profile is left and the profile is
 * gone. Anything beyond loopback is refused.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/controller/store/sqlite-store.ts';
import { overviewModel } from '../../src/controller/ui/overview.ts';
import { escapeXml } from '../../src/controller/ui/svg-plot.ts';
import { launchBrowser, type BrowserSession } from '../support/browser.ts';
import { markedProcesses } from '../support/global-setup.ts';

const NOW = Date.UTC(2026, 0, 15, 12, 30);
const CSP = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

let browser: BrowserSession | undefined;
let server: Server | undefined;
let shots: string | undefined;
afterEach(async () => {
  await browser?.close();
  browser = undefined;
  await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
  server = undefined;
  if (shots !== undefined) rmSync(shots, { recursive: true, force: true });
  shots = undefined;
});

/** The overview of a store with one worker and one waiting build, as an HTML page. */
async function overviewPage(): Promise<string> {
  const store = new SqliteStore({ path: ':memory:' });
  try {
    await store.migrate();
    await store.createWorker({ id: 'mac-<1>', labels: [], keyHash: 'k', createdAt: 0 });
    await store.createBuild({
      id: 'b000000000000001', steps: [{ name: 's', run: 'true' }], env: {}, secretEnvNames: [], secretEnvSealed: null,
      labels: ['nobody-has-this'], artifacts: [], timeoutS: 60, maxAttempts: 1, createdAt: NOW - 3_600_000,
    });
    const m = await overviewModel(store, NOW);
    const figures = m.figures.map((f) => `<dt>${escapeXml(f.label)}</dt><dd>${escapeXml(f.value)}</dd>`).join('');
    const plots = m.plots.map((p) => `<figure id="${p.id}">${p.svg}<figcaption>${escapeXml(p.summary)}</figcaption></figure>`).join('');
    return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Overview</title></head><body><h1>Overview</h1><dl>${figures}</dl>${plots}</body></html>`;
  } finally {
    await store.close();
  }
}

async function serve(html: string): Promise<string> {
  const s = createServer((req, res) => {
    const headers = { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': CSP };
    if (req.url === '/') res.writeHead(200, headers).end(html);
    // What the CSP must refuse, to show that the check below would see it.
    else if (req.url === '/inline-style') res.writeHead(200, headers).end('<!doctype html><p style="color: red">styled</p>');
    else res.writeHead(req.url === '/favicon.ico' ? 204 : 404).end();
  });
  server = s;
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}/`;
}

describe('the Chromium harness', () => {
  it('shows the overview served on 127.0.0.1 under a strict CSP, screenshots it, and leaves no process or profile after close', async () => {
    const url = await serve(await overviewPage());
    browser = await launchBrowser();
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(msg.text());
    });
    page.on('pageerror', (err) => problems.push(err.message));
    const res = await page.goto(url);
    expect(res?.status()).toBe(200);

    expect(await page.textContent('h1')).toBe('Overview');
    expect(await page.locator('dt', { hasText: 'Queued now' }).locator('xpath=following-sibling::dd[1]').textContent()).toBe('1');
    // The plots are inline SVG, named for assistive technology by their <title>.
    expect(await page.locator('#worker-busy svg').getAttribute('role')).toBe('img');
    expect(await page.locator('#queue-depth svg title').first().textContent()).toBe('Queue depth');
    // The worker id arrives as text, not markup.
    expect(await page.locator('#worker-busy svg .plot-label').first().textContent()).toBe('mac-<1>');
    expect(await page.locator('#worker-busy svg').evaluate((svg) => svg.getBoundingClientRect().width)).toBeGreaterThan(100);
    // Nothing was refused by the CSP (a `style` attribute or a script would be, with a console error).
    expect(problems).toEqual([]);

    shots = mkdtempSync(join(tmpdir(), 'expo-shots-'));
    const png = await browser.screenshot(page, shots, 'overview');
    expect(readFileSync(png).subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    // The check above is a real one: a page with a `style` attribute gets a CSP console error.
    await page.goto(`${url}inline-style`);
    expect(problems.join('\n')).toMatch(/Content Security Policy/);

    // Loopback only: an address beyond it goes to the dead proxy.
    await expect(page.goto('http://192.0.2.1/')).rejects.toThrow(/ERR_PROXY_CONNECTION_FAILED/);

    const profile = browser.profileDir;
    expect(markedProcesses((p) => p.cmdline.includes(profile)).length).toBeGreaterThan(0);
    await browser.close();
    browser = undefined;
    expect(markedProcesses((p) => p.cmdline.includes(profile))).toEqual([]);
    expect(existsSync(profile)).toBe(false);
  });

  it('cleans up when the test fails mid-way: close() after a page error still ends the browser', async () => {
    browser = await launchBrowser();
    const page = await browser.newPage();
    await expect(page.goto('http://127.0.0.1:9/')).rejects.toThrow(/net::ERR_/);
    const profile = browser.profileDir;
    // A second close (as an afterEach would do after the test's own) is a no-op.
    await browser.close();
    await browser.close();
    browser = undefined;
    expect(markedProcesses((p) => p.cmdline.includes(profile))).toEqual([]);
    expect(existsSync(profile)).toBe(false);
  });
});
