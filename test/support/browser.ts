/**
 * A real Chromium for the dashboard's tests, driven by playwright-core: Debian's `chromium`
 * (/usr/bin/chromium, which script/bootstrap installs) or $CHROMIUM_PATH, headless, in a fresh
 * profile made for it, reaching nothing but loopback.
 *
 * - Profile: a `mkdtemp` dir of its own (launchPersistentContext), so no state leaks between
 *   tests and the leak check sees the dir if `close()` were skipped.
 * - Sandbox: the suite runs as root in a container, and Chromium refuses to start its setuid /
 *   namespace sandbox as root, so `--no-sandbox`. That is acceptable only because every page it
 *   opens is our own, served on 127.0.0.1 by the test; never point this at the internet.
 * - Network: every request goes through a proxy at 127.0.0.1:9 (the discard port, where nothing
 *   listens), except loopback, which Chromium always reaches directly: anything else fails with
 *   ERR_PROXY_CONNECTION_FAILED instead of leaving the machine.
 * - Cleanup: `close()` closes the browser, then kills (by pid) any Chromium process still running
 *   with this profile on its command line, waits until none is left, and removes the profile;
 *   it runs to the end even when the test failed or closing timed out, and a second call is a no-op.
 *   Chromium inherits the suite's test mark (EXPO_WORKER_TEST_RUN), so an orphan also fails the
 *   file's leak check.
 */
import { existsSync, mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { markedProcesses, survivors } from './global-setup.ts';

/** Where Chromium is: $CHROMIUM_PATH when set, else Debian's /usr/bin/chromium. */
export function chromiumPath(): string {
  return process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
}

/** Options of {@link launchBrowser}. */
export interface BrowserOptions {
  /** How long launching, a navigation or closing may take, ms. Default 60 000 (a busy 2-core machine). */
  timeoutMs?: number;
  /** The viewport, CSS px. Default 1280 × 800. */
  viewport?: { width: number; height: number };
}

/** A running Chromium with one profile. */
export interface BrowserSession {
  readonly context: BrowserContext;
  /** The profile dir (removed by `close()`). */
  readonly profileDir: string;
  /** A new tab. */
  newPage(): Promise<Page>;
  /** Saves a full-page PNG of `page` as `<dir>/<name>.png` (dir made if missing); the file's path. */
  screenshot(page: Page, dir: string, name: string): Promise<string>;
  /** Closes the browser, makes sure no process of it survives, removes the profile. Idempotent. */
  close(): Promise<void>;
}

/** Launches Chromium headless in a fresh profile; call `close()` in a finally or after-hook. */
export async function launchBrowser(options: BrowserOptions = {}): Promise<BrowserSession> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const executablePath = chromiumPath();
  if (!existsSync(executablePath)) throw new Error(`no Chromium at ${executablePath}: run script/bootstrap, or set CHROMIUM_PATH`);
  const profileDir = mkdtempSync(join(tmpdir(), 'expo-chromium-'));
  const ofThisProfile = (): number[] => markedProcesses((p) => p.cmdline.includes(profileDir)).map((p) => p.pid);
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    try {
      await withTimeout(context?.close(), timeoutMs, 'closing Chromium');
    } catch {
      // whatever went wrong, the processes are killed below and the profile removed
    }
    for (const pid of ofThisProfile()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // it ended meanwhile
      }
    }
    const left = await survivors((p) => p.cmdline.includes(profileDir), timeoutMs);
    rmSync(profileDir, { recursive: true, force: true });
    if (left.length > 0) throw new Error(`Chromium processes outlived close(): ${left.map((p) => p.pid).join(', ')}`);
  };
  let context: BrowserContext | undefined;
  try {
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath,
      headless: true,
      timeout: timeoutMs,
      viewport: options.viewport ?? { width: 1280, height: 800 },
      // Root in a container: see the header for why the sandbox is off.
      chromiumSandbox: false,
      args: ['--no-sandbox', '--disable-dev-shm-usage', '--no-first-run', '--disable-gpu'],
      proxy: { server: 'http://127.0.0.1:9', bypass: '127.0.0.1,localhost' },
      // The child inherits the suite's test mark from this environment.
      env: { ...process.env },
    });
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
  const ctx = context;
  ctx.setDefaultTimeout(timeoutMs);
  ctx.setDefaultNavigationTimeout(timeoutMs);
  return {
    context: ctx,
    profileDir,
    newPage: () => ctx.newPage(),
    async screenshot(page, dir, name) {
      if (!/^[\w.-]+$/.test(name)) throw new Error(`screenshot name ${JSON.stringify(name)}: letters, digits, _ . - only`);
      mkdirSync(dir, { recursive: true });
      const path = join(dir, `${name}.png`);
      await page.screenshot({ path, fullPage: true });
      return path;
    },
    close,
  };
}

async function withTimeout<T>(p: Promise<T> | undefined, ms: number, what: string): Promise<T | undefined> {
  if (p === undefined) return undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
