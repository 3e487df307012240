/**
 * The dashboard's pages on a real controller (app.inject, real SQLite): every page renders as
 * HTML under the CSP with no inline script or style; a caller without a credential is sent to
 * sign in; assets come from a fixed list; the log is shown as a tail with older windows on demand.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { pathOf, ROUTES } from '../../src/protocol/routes.ts';
import { TAIL_WINDOW_BYTES } from '../../src/controller/ui/log-html.ts';
import { startTestController, type TestController } from './support.ts';
import { accessIsWritten, CSP, expectSafeHtml, runningBuild } from './ui-support.ts';

let c: TestController | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

const get = (url: string, headers: Record<string, string> = c!.admin) => c!.app.inject({ method: 'GET', url, headers });

describe('dashboard pages', () => {
  it('renders every page for the admin key as HTML under the CSP, with no inline script or style', async () => {
    c = await startTestController();
    const queued = await c.submit({ labels: ['nobody'] });
    const { id: running, append } = await runningBuild(c, 'mac-1');
    await append('line one\n\u001b[31mred\u001b[0m \u001b[1mbold\u001b[0m\n');
    const pages = ['/', '/builds', '/builds?status=queued', `/builds/${queued.id}`, `/builds/${running}`, `/builds/${running}/log?before=9`, '/workers', '/queue', '/projects', '/login'];
    if (await accessIsWritten(c)) pages.push('/tokens', '/audit');
    for (const url of pages) {
      const res = await get(url);
      expect(res.statusCode, url).toBe(200);
      expect(res.headers['content-type'], url).toMatch(/^text\/html/);
      expect(res.headers['content-security-policy'], url).toBe(CSP);
      // Not helmet's no-referrer: under it a browser sends `Origin: null` with every form POST (the sign-in checks Origin).
      expect(res.headers['referrer-policy'], url).toBe('same-origin');
      expectSafeHtml(res.body, url);
    }
    const home = await get('/');
    expect(home.body).toContain('<span id="whoami">admin key (admin)</span>');
    expect(home.body).toContain('href="/audit"');
  });

  it('shows a build: status, progress, why it waits, controls for its state, and the log tail with its end offset', async () => {
    c = await startTestController();
    const queued = await c.submit({ labels: ['nobody'] });
    const page = (await get(`/builds/${queued.id}`)).body;
    expect(page).toContain('<span id="build-status" class="status status-queued">queued</span>');
    expect(page).toMatch(/<progress id="progress" max="100">/);
    expect(page).toContain('<p id="waiting" class="waiting">Waiting: no worker is enrolled');
    expect(page).toContain('<form id="cancel"');
    expect(page).not.toContain('<form id="rerun"');
    expect(page).toContain('<pre id="log" data-build-id="' + queued.id + '" data-log-end="0"');
    expect(page).not.toContain('id="load-older"');

    const { id, append } = await runningBuild(c, 'mac-1');
    await append('hello\n');
    const shown = (await get(`/builds/${id}`)).body;
    expect(shown).toContain('data-log-end="6"');
    expect(shown).toContain('>hello\n</pre>');
  });

  it('shows a failed build\'s reason in words and offers a rerun, not a cancel', async () => {
    c = await startTestController();
    const { id, complete } = await runningBuild(c, 'mac-1');
    await complete({ status: 'failed', exitCode: 2, failureReason: 'build_failed', message: 'xcodebuild exited 2' });
    const page = (await get(`/builds/${id}`)).body;
    expect(page).toContain('<p id="failure" class="failure">failed: a step failed (exit 2) — xcodebuild exited 2</p>');
    expect(page).toContain('<form id="rerun"');
    expect(page).not.toContain('<form id="cancel"');
  });

  it('lists each step with its duration: over, running for, not started; a step name renders as text', async () => {
    c = await startTestController();
    const steps = [
      { name: 'install', run: 'true' },
      { name: '<script>alert(1)</script>', run: 'true' },
      { name: 'archive', run: 'true' },
    ];
    const { id, stepStarted, complete } = await runningBuild(c, 'mac-1', [], { steps });
    // The list says when it was rendered, on the controller's clock, for the page's live "running for".
    const stepsOf = async () => new RegExp(`<ol id="steps" data-now="${c!.clock.now}">([\\s\\S]*?)</ol>`).exec((await get(`/builds/${id}`)).body)![1]!.trim();
    // Started by no agent report yet (an older agent reports none): every step shows —.
    expect(await stepsOf()).toContain('<li class="step" data-step="0">install <span class="duration">—</span></li>');
    await stepStarted(0);
    c.clock.now += 12_000;
    await stepStarted(1);
    c.clock.now += 65_000;
    expect((await stepsOf()).split(/(?<=<\/li>)/)).toEqual([
      '<li class="step" data-step="0">install <span class="duration">12 s</span></li>',
      '<li class="step" data-step="1">&lt;script&gt;alert(1)&lt;/script&gt; <span class="duration">running for 1 min 5 s</span></li>',
      '<li class="step" data-step="2">archive <span class="duration">—</span></li>',
    ]);
    await complete({ status: 'failed', exitCode: 1, failureReason: 'build_failed' });
    expect(await stepsOf()).toContain('<li class="step" data-step="1">&lt;script&gt;alert(1)&lt;/script&gt; <span class="duration">1 min 5 s</span></li>');
    expect(await stepsOf()).toContain('<li class="step" data-step="2">archive <span class="duration">—</span></li>');
  });

  it('shows the last 256 KiB of a long log from a line start, and older windows on demand', async () => {
    c = await startTestController({ maxLogBytes: 4 * 1024 * 1024 });
    const { id, append } = await runningBuild(c, 'mac-1');
    const line = (n: number) => `line ${String(n).padStart(6, '0')} ${'x'.repeat(80)}\n`;
    let text = '';
    for (let n = 0; n < 8000; n++) text += line(n);
    for (let at = 0; at < text.length; at += 512 * 1024) await append(text.slice(at, at + 512 * 1024));
    const size = Buffer.byteLength(text);
    const page = (await get(`/builds/${id}`)).body;
    const start = Number(/hx-get="\/builds\/[a-z2-7]+\/log\?before=(\d+)"/.exec(page)![1]);
    expect(page).toContain(`data-log-end="${size}"`);
    expect(size - start).toBeLessThanOrEqual(TAIL_WINDOW_BYTES);
    expect(text[start - 1]).toBe('\n');
    const shown = /<pre id="log"[^>]*>([\s\S]*)<\/pre>/.exec(page)![1]!;
    expect(shown).toBe(text.slice(start));

    // htmx asks for the fragment: the window before, and the next "load older" out of band.
    const older = await get(`/builds/${id}/log?before=${start}`, { ...c.admin, 'hx-request': 'true' });
    expect(older.statusCode).toBe(200);
    expect(older.body).not.toContain('<html');
    const next = Number(/before=(\d+)/.exec(older.body)![1]);
    expect(older.body).toContain(text.slice(next, start));
    expect(older.body).toContain('hx-swap-oob="true"');
    // Without JS, the same window is a page.
    const plain = await get(`/builds/${id}/log?before=${start}`);
    expect(plain.body).toContain('<html');
    expect(plain.body).toContain(`log bytes ${next}–${start}`);
    // The first window: no older link.
    const first = await get(`/builds/${id}/log?before=${line(0).length * 3}`, { ...c.admin, 'hx-request': 'true' });
    expect(first.body).toContain(line(0) + line(1) + line(2));
    expect(first.body).toContain('<span id="load-older" hx-swap-oob="true"></span>');
  });

  it('starts a window with no newline in it at a whole UTF-8 character', async () => {
    c = await startTestController({ maxLogBytes: 4 * 1024 * 1024 });
    const { id, append } = await runningBuild(c, 'mac-1');
    // One line of 3-byte characters, longer than a window, whose window starts mid-character.
    const text = `a${'€'.repeat(100_000)}`;
    await append(text);
    const page = (await get(`/builds/${id}`)).body;
    const shown = /<pre id="log"[^>]*>([\s\S]*)<\/pre>/.exec(page)![1]!;
    expect(shown).not.toContain('\ufffd');
    expect(shown).toMatch(/^€+$/);
    const start = Number(/before=(\d+)/.exec(page)![1]);
    expect(Buffer.byteLength(text) - start).toBe(Buffer.byteLength(shown));
    expect((Buffer.byteLength(text) - start) % 3).toBe(0);
  });

  it('lists builds with filters and answers only the rows for the live refresh', async () => {
    c = await startTestController();
    const a = await c.submit({ labels: ['nobody'] });
    const { id: b } = await runningBuild(c, 'mac-1');
    const all = (await get('/builds')).body;
    expect(all).toContain(`<tr data-build-id="${a.id}">`);
    expect(all).toContain(`<tr data-build-id="${b}">`);
    expect(all).toContain('hx-get="/builds?fragment=rows" hx-trigger="every 2s" hx-select="#builds-body" hx-swap="outerHTML"');
    const queued = await get('/builds?status=queued&repo=&ref=');
    expect(queued.body).toContain(`data-build-id="${a.id}"`);
    expect(queued.body).not.toContain(`data-build-id="${b}"`);
    expect(queued.body).toContain('<option value="queued" selected>');
    const rows = await get('/builds?status=running&fragment=rows');
    expect(rows.body.startsWith('<tbody id="builds-body"')).toBe(true);
    expect(rows.body).toContain(`data-build-id="${b}"`);
    expect(rows.body).toContain('hx-get="/builds?status=running&amp;fragment=rows"');
    const bad = await get('/builds?status=nonsense');
    expect(bad.statusCode).toBe(400);
    expect(bad.body).toContain('API_BAD_REQUEST');
  });

  it('lists workers with their current build and the controls of the role; the queue oldest first with why each waits', async () => {
    c = await startTestController();
    const { id: running } = await runningBuild(c, 'mac-1', ['ios']);
    await c.enrol('mac-2', ['android']);
    const first = await c.submit({ labels: ['nobody'] });
    const second = await c.submit({ labels: ['ios'] });
    const workers = (await get('/workers')).body;
    expect(workers).toMatch(new RegExp(`<tr data-worker-id="mac-1"[^>]*>[\\s\\S]*?<td class="status"><span class="status status-busy">busy</span></td>\\s*<td class="current-build"><a href="/builds/${running}">`));
    expect(workers).toContain('<form class="drain" method="post" action="/workers/mac-1/drain">');
    expect(workers).toContain('<form class="remove" method="post" action="/workers/mac-2/remove">');
    expect(workers).toContain('<span class="label">android</span>');
    const queue = (await get('/queue')).body;
    expect(queue.indexOf(first.id)).toBeLessThan(queue.indexOf(second.id));
    expect(queue).toContain('every matching worker is busy (mac-1)');
  });

  it('sends a caller without a credential, or with a bad one, to sign in; the JSON API still answers 401', async () => {
    c = await startTestController();
    for (const headers of [{}, { authorization: 'Bearer not-a-key-at-all' }] as Record<string, string>[]) {
      const res = await get('/builds?status=queued', headers);
      expect(res.statusCode).toBe(303);
      expect(res.headers.location).toBe('/login?next=%2Fbuilds%3Fstatus%3Dqueued');
    }
    // htmx's live refresh is told to navigate (its XHR would follow a 303 into the table).
    const refresh = await get('/builds?fragment=rows&status=queued', { 'hx-request': 'true' });
    expect(refresh.statusCode).toBe(200);
    expect(refresh.headers['hx-redirect']).toBe('/login?next=%2Fbuilds%3Fstatus%3Dqueued');
    const api = await get(pathOf(ROUTES.listBuilds, {}), {});
    expect(api.statusCode).toBe(401);
    expect(api.json()).toMatchObject({ code: 'AUTH_MISSING' });
    const login = await get('/login?next=%2Fbuilds');
    expect(login.body).toContain('<form id="signin" method="post" action="/login?next=%2Fbuilds">');
    expect(login.body).not.toContain('id="whoami"');
    expect((await get('/login?next=%2F%2Fevil.example')).statusCode).toBe(400);
  });

  it('serves assets from a fixed list with an ETag, and nothing else', async () => {
    c = await startTestController();
    for (const [name, type] of [['app.js', 'text/javascript'], ['app.css', 'text/css'], ['htmx.min.js', 'text/javascript'], ['ansi-up.js', 'text/javascript']] as const) {
      const res = await get(`/ui/${name}`, {});
      expect(res.statusCode, name).toBe(200);
      expect(res.headers['content-type']).toMatch(new RegExp(`^${type}`));
      const again = await get(`/ui/${name}`, { 'if-none-match': String(res.headers.etag) });
      expect(again.statusCode).toBe(304);
    }
    expect((await get('/ui/htmx.min.js', {})).body).toMatch(/htmx/);
    for (const url of ['/ui/package.json', '/ui/index.js', '/ui/..%2Fpackage.json', '/ui/%2e%2e%2fpackage.json', '/ui/app.js%00']) {
      const res = await get(url, {});
      expect([400, 404], url).toContain(res.statusCode);
      expect(res.body, url).not.toContain('"dependencies"');
    }
    expect((await get('/ui/nope.js', {})).json()).toMatchObject({ code: 'API_NOT_FOUND' });
  });

  it('still refuses form bodies on the JSON API (415), and a form without its _csrf field', async () => {
    c = await startTestController();
    const form = { ...c.admin, 'content-type': 'application/x-www-form-urlencoded' };
    const api = await c.app.inject({ method: 'POST', url: pathOf(ROUTES.submitBuild, {}), headers: form, payload: 'steps=x' });
    expect(api.statusCode).toBe(415);
    expect(api.json()).toMatchObject({ code: 'API_UNSUPPORTED_MEDIA_TYPE' });
    const b = await c.submit();
    const noCsrf = await c.app.inject({ method: 'POST', url: `/builds/${b.id}/cancel`, headers: form, payload: '' });
    expect(noCsrf.statusCode).toBe(400);
    expect(noCsrf.headers['content-type']).toMatch(/^text\/html/);
    expect((await c.get(b.id)).status).toBe('queued');
  });
});
