/**
 * Output formats (spec §2): tart's text table (cfilipov/TextTable plain format, then trimmed) and
 * Foundation's pretty JSON (`"key" : value`, 2-space indent, `/` escaped, `[`/blank/`]` when
 * empty). Key order is unspecified in real tart; TART_SIM_SHUFFLE_KEYS=1 shuffles it per call.
 */

/** A JSON scalar as tart prints one. */
export type Scalar = string | number | boolean;
/** One record: ordered entries (text columns use this order). */
export type Row = Array<[string, Scalar]>;

/** Left-aligned columns padded to max(header, value), one space apart, block trimmed at both ends. */
export function textTable(rows: Row[]): string {
  if (rows.length === 0) return '';
  const headers = (rows[0] ?? []).map(([k]) => k);
  const cells = [headers, ...rows.map((r) => r.map(([, v]) => String(v)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((c) => (c[i] ?? '').length)));
  const lines = cells.map((c) => c.map((v, i) => v.padEnd(widths[i] ?? 0)).join(' '));
  return lines.join('\n').trim();
}

function jsonString(s: string): string {
  return JSON.stringify(s).replaceAll('/', '\\/');
}

function shuffled<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

function jsonObject(row: Row, indent: string, shuffle: boolean): string {
  const entries = shuffle ? shuffled(row) : row;
  const body = entries
    .map(([k, v]) => `${indent}  ${jsonString(k)} : ${typeof v === 'string' ? jsonString(v) : String(v)}`)
    .join(',\n');
  return `${indent}{\n${body}\n${indent}}`;
}

/** Pretty JSON array of records, as `tart list --format json` prints it. */
export function jsonArray(rows: Row[], shuffle: boolean): string {
  if (rows.length === 0) return '[\n\n]';
  return `[\n${rows.map((r) => jsonObject(r, '  ', shuffle)).join(',\n')}\n]`;
}

/** Pretty JSON object, as `tart get --format json` prints it. */
export function jsonRecord(row: Row, shuffle: boolean): string {
  return jsonObject(row, '', shuffle);
}

/** ISO-8601 UTC with second precision, e.g. `2026-05-12T21:45:18Z`. */
export function isoSeconds(d: Date): string {
  return `${d.toISOString().slice(0, 19)}Z`;
}

/** RelativeDateTimeFormatter's full numeric phrase for a past date: `5 minutes ago`. */
export function relativePhrase(d: Date, now: Date = new Date()): string {
  const s = Math.max(0, Math.round((now.getTime() - d.getTime()) / 1000));
  const units: Array<[string, number]> = [
    ['year', 365 * 86400],
    ['month', 30 * 86400],
    ['week', 7 * 86400],
    ['day', 86400],
    ['hour', 3600],
    ['minute', 60],
  ];
  for (const [unit, size] of units) {
    if (s >= size) {
      const n = Math.floor(s / size);
      return `${n} ${unit}${n === 1 ? '' : 's'} ago`;
    }
  }
  return `${s} second${s === 1 ? '' : 's'} ago`;
}
