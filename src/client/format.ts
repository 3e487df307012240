/** Plain-text tables and times for the people's commands. */
import type { BuildView } from '../protocol/schemas.ts';

/** Left-aligned columns separated by two spaces; the header row first. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** `42s`, `3m05s`, `2h04m`. */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** How long ago an ISO time was, or `-`. */
export function ago(iso: string | null, now: number): string {
  return iso === null ? '-' : `${duration(now - Date.parse(iso))} ago`;
}

/** Where a GitHub build came from, short: `octo/app@main 1a2b3c4` (a tag `@v1`, a pull request `#7`). */
export function sourceLabel(src: BuildView['source'] | null): string {
  if (src === null) return '-';
  const ref = src.prNumber !== null ? `#${src.prNumber}` : `@${src.ref.replace(/^refs\/(heads|tags)\//, '')}`;
  return `${src.repo}${ref} ${src.sha.slice(0, 7)}${src.rerunOf === null ? '' : ` (rerun of ${src.rerunOf})`}`;
}
