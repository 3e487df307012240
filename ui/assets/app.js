/* global document, window, EventSource */
// The build page's live log (progressive enhancement: the page reads without this file).
// Opens the build's log stream at the byte the server-rendered log ends, appends each chunk
// through one ansi_up converter (it escapes the text; its styles become classes, as on the
// server: the CSP allows no inline style), keeps the view at the bottom unless the reader has
// scrolled up, updates the status, progress and step durations, closes on `end`, and drops the oldest lines past
// MAX_LINES so a 50 MB log never freezes the page.
import { AnsiUp } from '/ui/ansi-up.js';

const MAX_LINES = 20000;
const MARKERS = { b: 'ansi-bold', f: 'ansi-faint', i: 'ansi-italic', u: 'ansi-underline' };

// OSC 8 hyperlinks, removed with their text kept (see `unlink` in src/controller/ui/log-html.ts).
// eslint-disable-next-line no-control-regex -- the escape sequences are what this removes
const OSC8 = /\u001b\]8;[^\u0007\u001b]*(?:\u0007|\u001b\\)/g;

function restyle(html) {
  return html.replace(/<span style="([^"]*)"(?: class="([^"]*)")?>/g, (_m, styles, classes) => {
    const names = classes === undefined ? [] : classes.split(' ');
    for (const s of styles.split(';')) if (MARKERS[s] !== undefined) names.push(MARKERS[s]);
    return names.length === 0 ? '<span>' : `<span class="${names.join(' ')}">`;
  });
}

function newAnsiUp() {
  const a = new AnsiUp();
  a.use_classes = true;
  // No OSC 8 hyperlinks from a build's log (see `unlink` in src/controller/ui/log-html.ts).
  a.url_allowlist = Object.create(null);
  a.boldStyle = 'b';
  a.faintStyle = 'f';
  a.italicStyle = 'i';
  a.underlineStyle = 'u';
  return a;
}

const FINAL = new Set(['succeeded', 'failed', 'cancelled']);

// `42 s`, `3 min 5 s`, `2 h 4 min`: as the server writes them (durationWords in src/controller/ui/format.ts).
function durationWords(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

// The step list's durations, following the `status` events' stepTimes; the running step's
// "running for" ticks each second, on the server's clock (the page says when it was rendered).
function stepDurations(list) {
  const skewMs = Number(list.dataset.now) - Date.now();
  let times = null;
  let status = '';
  const render = () => {
    if (times === null) return;
    for (const li of list.querySelectorAll('li[data-step]')) {
      const t = times[Number(li.dataset.step)];
      const span = li.querySelector('.duration');
      if (!t || !span) continue;
      let words = '—';
      if (t.durationS !== null) words = durationWords(t.durationS * 1000);
      else if (t.startedAt !== null && status === 'running') words = `running for ${durationWords(Date.now() + skewMs - Date.parse(t.startedAt))}`;
      span.textContent = words;
    }
  };
  const timer = window.setInterval(render, 1000);
  return {
    update(s) {
      if (!Array.isArray(s.stepTimes)) return;
      times = s.stepTimes;
      status = s.status;
      render();
    },
    stop: () => window.clearInterval(timer),
  };
}

function followLog(pre) {
  const id = pre.dataset.buildId;
  const statusEl = document.getElementById('build-status');
  if (statusEl && FINAL.has(statusEl.textContent.trim())) return;
  const ansi = newAnsiUp();
  const stepsEl = document.getElementById('steps');
  const steps = stepsEl ? stepDurations(stepsEl) : null;
  let lines = (pre.textContent.match(/\n/g) || []).length;
  // Pinned while the reader is at the bottom; scrolling up unpins, scrolling back down pins again.
  let pinned = true;
  const scroller = document.scrollingElement || document.documentElement;
  const atBottom = () => scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
  window.addEventListener('scroll', () => { pinned = atBottom(); }, { passive: true });

  const es = new EventSource(`/api/v1/builds/${encodeURIComponent(id)}/logs/stream?offset=${encodeURIComponent(pre.dataset.logEnd)}`);
  es.addEventListener('log', (ev) => {
    const text = JSON.parse(ev.data);
    const chunk = document.createElement('span');
    chunk.innerHTML = restyle(ansi.ansi_to_html(text.replace(OSC8, '')));
    pre.appendChild(chunk);
    pre.dataset.logEnd = ev.lastEventId;
    lines += (text.match(/\n/g) || []).length;
    trim();
    if (pinned) scroller.scrollTop = scroller.scrollHeight;
  });
  es.addEventListener('status', (ev) => {
    const s = JSON.parse(ev.data);
    if (statusEl) {
      statusEl.textContent = s.status;
      statusEl.className = `status status-${s.status}`;
    }
    const progress = document.getElementById('progress');
    if (progress && typeof s.progress === 'number') {
      progress.value = s.progress;
      progress.textContent = `${s.progress}%`;
    }
    if (steps) steps.update(s);
  });
  es.addEventListener('end', (ev) => {
    es.close();
    if (steps) steps.stop();
    const s = JSON.parse(ev.data);
    if (statusEl) {
      statusEl.textContent = s.status;
      statusEl.className = `status status-${s.status}`;
    }
  });

  // Whole chunks go first (each is a span); the count is approximate at a chunk's edge, which is
  // enough to bound the DOM.
  function trim() {
    while (lines > MAX_LINES && pre.firstChild) {
      const first = pre.firstChild;
      lines -= ((first.textContent || '').match(/\n/g) || []).length;
      pre.removeChild(first);
      const older = document.getElementById('older');
      if (older) older.remove();
    }
  }
}

const pre = document.getElementById('log');
if (pre && pre.dataset.buildId && pre.dataset.active === 'true') followLog(pre);
