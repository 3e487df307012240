/**
 * A build's log as HTML: a window of at most `TAIL_WINDOW_BYTES` that starts at a line start,
 * rendered by ansi_up (which escapes the text) with classes instead of inline styles (the CSP
 * allows no `style=` attribute: see `restyle`). The build page shows the window ending at the
 * log's end; "load older" asks for the window ending where the shown one starts.
 */
import { AnsiUp } from 'ansi_up';
import type { Store } from '../store/store.ts';

/** How much log one window holds, bytes: 256 KiB. */
export const TAIL_WINDOW_BYTES = 256 * 1024;

/** A rendered window of the log: bytes [start, end) as HTML. */
export interface LogWindow {
  start: number;
  end: number;
  html: string;
}

/**
 * ansi_up writes bold, faint, italic, underline and 24-bit colours as `style=` attributes even in
 * class mode. Its styles are set to one-letter markers, and this turns them into classes
 * (`ansi-bold`…) and drops 24-bit colours (no class can hold them). Safe as a text rewrite: the
 * log's own text is escaped before it is wrapped, so `<span style="` can only be ansi_up's.
 */
export function restyle(html: string): string {
  return html.replace(/<span style="([^"]*)"(?: class="([^"]*)")?>/g, (_m, styles: string, classes: string | undefined) => {
    const names = classes === undefined ? [] : classes.split(' ');
    for (const s of styles.split(';')) {
      const cls = MARKERS[s];
      if (cls !== undefined) names.push(cls);
    }
    return names.length === 0 ? '<span>' : `<span class="${names.join(' ')}">`;
  });
}

const MARKERS: Record<string, string> = { b: 'ansi-bold', f: 'ansi-faint', i: 'ansi-italic', u: 'ansi-underline' };

/** An ansi_up converter set up for the dashboard (classes, markers for `restyle`). */
export function newAnsiUp(): AnsiUp {
  const a = new AnsiUp();
  a.use_classes = true;
  // No OSC 8 hyperlinks: a build's log (any pull request's) must not put a clickable link to
  // any site on the dashboard's trusted origin. `unlink` leaves their text; one that slips
  // past it (split across two chunks) is dropped by ansi_up for want of an allowed scheme — a
  // prototype-less list, so `__proto__:` or `constructor:` is no scheme it finds either.
  a.url_allowlist = Object.create(null) as Record<string, number>;
  a.boldStyle = 'b';
  a.faintStyle = 'f';
  a.italicStyle = 'i';
  a.underlineStyle = 'u';
  return a;
}

/** The log's bytes as HTML (one converter: colours carry across lines, not across windows). */
export function logHtml(bytes: Buffer): string {
  return restyle(newAnsiUp().ansi_to_html(unlink(bytes.toString('utf8'))));
}

/** The OSC 8 hyperlink sequences (`ESC ] 8 ; params ; url ST`, ST being BEL or `ESC \`), which `unlink` removes, keeping the linked text. */
// eslint-disable-next-line no-control-regex -- the escape sequences are what this removes
const OSC8 = /\u001b\]8;[^\u0007\u001b]*(?:\u0007|\u001b\\)/g;
export const unlink = (text: string): string => text.replace(OSC8, '');

/**
 * The window of the log ending at `end` (clipped to the log's size): at most TAIL_WINDOW_BYTES,
 * starting just after a newline unless it reaches the log's first byte. A window with no newline
 * at all starts at the first whole UTF-8 character instead.
 */
export async function logWindow(store: Pick<Store, 'readLogRange'>, buildId: string, logBytes: number, end: number): Promise<LogWindow> {
  const to = Math.min(end, logBytes);
  const from = Math.max(0, to - TAIL_WINDOW_BYTES);
  let bytes = await store.readLogRange(buildId, from, to);
  let start = from;
  if (from > 0) {
    const nl = bytes.indexOf(0x0a);
    let skip = nl >= 0 ? nl + 1 : 0;
    if (nl < 0) while (skip < bytes.length && (bytes[skip]! & 0xc0) === 0x80) skip++;
    bytes = bytes.subarray(skip);
    start = from + skip;
  }
  return { start, end: start + bytes.length, html: logHtml(bytes) };
}
