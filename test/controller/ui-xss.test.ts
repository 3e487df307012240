/**
 * Hostile text on the dashboard (app.inject, real SQLite): step names, log lines with ANSI
 * colours, a branch name, labels and artifact problems render as text — `<script>` never appears
 * unescaped — and ansi_up's colours become classes, never `style=` (the CSP allows none).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { BuildSource } from '../../src/protocol/schemas.ts';
import { newAnsiUp, logHtml, restyle } from '../../src/controller/ui/log-html.ts';
import { startTestController, type TestController } from './support.ts';
import { expectSafeHtml, runningBuild } from './ui-support.ts';

let c: TestController | undefined;
afterEach(async () => {
  await c?.close();
  c = undefined;
});

const XSS = '<script>alert(1)</script>';
const ESCAPED = '&lt;script&gt;alert(1)&lt;/script&gt;';
const get = (url: string) => c!.app.inject({ method: 'GET', url, headers: c!.admin });

const sourceOf = (projectId: string, ref: string): BuildSource => ({
  projectId,
  repo: 'Octo/App',
  name: 'ios',
  event: 'push',
  ref,
  sha: 'a'.repeat(40),
  prNumber: null,
  deliveryId: null,
  rerunOf: null,
  cloneUrl: 'https://github.com/Octo/App.git',
  checkout: { submodules: false, lfs: false },
});

describe('hostile text on the dashboard', () => {
  it('renders step names, log lines, a branch name and labels as text', async () => {
    c = await startTestController();
    // Worker ids and labels refuse `<` and quotes; step names and log data are free text.
    const { id, append } = await runningBuild(c, 'mac-1', ['a=b/c:d'], { steps: [{ name: `${XSS} "quoted" 'single'`, run: 'true' }] });
    await append(`plain ${XSS}\n\u001b[31m${XSS}\u001b[0m\n\u001b]8;;javascript:alert(1)\u0007link\u001b]8;;\u0007\n<img src=x onerror=alert(1)>\n`);
    const project = await c.projects.create({ repo: 'Octo/App' });
    const hostileRef = `refs/heads/${XSS}"'`;
    const fromGithub = await c.service.submit({ steps: [{ name: 'build', run: 'true' }], labels: ['nobody'] }, sourceOf(project.id, hostileRef));

    for (const url of [`/builds/${id}`, '/builds', `/builds/${fromGithub.id}`, '/queue', '/workers', '/']) {
      const res = await get(url);
      expect(res.statusCode, url).toBe(200);
      expect(res.body, url).not.toContain(XSS);
      expect(res.body, url).not.toContain('<img');
      expect(res.body, url).not.toContain('javascript:');
      expectSafeHtml(res.body, url);
    }
    const build = (await get(`/builds/${id}`)).body;
    expect(build).toContain(`<li class="step" data-step="0">${ESCAPED} &quot;quoted&quot; &#39;single&#39; <span class="duration">`);
    expect(build).toContain(`plain ${ESCAPED}`);
    expect(build).toContain(`<span class="ansi-red-fg">${ESCAPED}</span>`);
    expect(build).toContain('&lt;img src=x onerror=alert(1)&gt;');
    const builds = (await get('/builds')).body;
    expect(builds).toContain(`Octo/App ${ESCAPED}&quot;&#39; @ aaaaaaa`);
    expect((await get('/workers')).body).toContain('<span class="label">a=b/c:d</span>');
  });

  it('turns ansi_up\'s styles into classes: bold, faint, italic, underline; 24-bit colours are dropped', () => {
    const html = logHtml(Buffer.from('\u001b[1;31mbold red\u001b[0m \u001b[2;3;4mfaint\u001b[0m \u001b[38;2;1;2;3mtrue\u001b[0m \u001b[42mbg\u001b[0m'));
    expect(html).toBe('<span class="ansi-red-fg ansi-bold">bold red</span> <span class="ansi-faint ansi-italic ansi-underline">faint</span> <span>true</span> <span class="ansi-green-bg">bg</span>');
    expect(restyle('<span style="b">x</span>')).toBe('<span class="ansi-bold">x</span>');
    // Text that looks like ansi_up's markup arrives escaped, so the rewrite never sees it.
    expect(logHtml(Buffer.from('<span style="b">'))).toBe('&lt;span style=&quot;b&quot;&gt;');
  });

  it('shows an OSC 8 hyperlink in a log as its text, never as a link to another site', () => {
    const html = logHtml(Buffer.from('\u001b]8;;https://evil.example/login\u001b\\sign in again\u001b]8;;\u001b\\ done'));
    expect(html).toContain('sign in again');
    expect(html).not.toContain('<a');
    expect(html).not.toContain('evil.example');
    // A link split from its opening sequence still reaches ansi_up whole in a later chunk: it
    // must find no scheme allowed, not even one inherited from Object.prototype.
    const a = newAnsiUp();
    for (const scheme of ['https', '__proto__', 'constructor', 'toString']) {
      expect(a.ansi_to_html(`\u001b]8;;${scheme}://x/\u001b\\text\u001b]8;;\u001b\\`)).not.toContain('<a');
    }
  });
});
