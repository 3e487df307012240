/**
 * Small server-rendered SVG plots for the dashboard: a line plot over time and a horizontal
 * stacked bar plot, each with axes, ticks and labels. The output is standalone, well-formed XML
 * that also embeds in HTML: no script, no `style` attribute (the page's CSP forbids inline style),
 * colours as presentation attributes that the page's CSS may override through the class names
 * (`plot`, `plot-axis`, `plot-grid`, `plot-tick`, `plot-label`, `plot-legend`, and each series'
 * own class), and every text escaped (worker ids and titles come from outside).
 * Accessible: `role="img"` with a `<title>` and a `<desc>` named by `aria-labelledby`.
 */

/** Escapes text for XML/HTML text and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** One line: a class for the page's CSS, a default colour, and its points (null: a gap). */
export interface LineSeries {
  name: string;
  className: string;
  colour: string;
  points: readonly { x: number; y: number | null }[];
}

/** What every plot takes. */
export interface PlotFrame {
  /** Unique on the page: it prefixes the ids of the title and description. Letters, digits, `-`. */
  id: string;
  title: string;
  /** The sentence a screen reader reads. */
  description: string;
  width?: number;
  height?: number;
}

export interface LinePlot extends PlotFrame {
  /** The x domain, e.g. the window in ms since the epoch. */
  xMin: number;
  xMax: number;
  /** The x ticks and their labels (e.g. every 3 h: "14:00"). */
  xTicks: readonly { x: number; label: string }[];
  /** The y axis starts at 0 and reaches at least this (the data's maximum otherwise). Default 1. */
  yMinMax?: number;
  /** A fixed top of the y axis (a percentage: 100). */
  yMax?: number;
  yFormat: (y: number) => string;
  series: readonly LineSeries[];
  /** Draws each series as steps (a level that holds until the next point) rather than slopes. */
  steps?: boolean;
}

/** One part of every bar, e.g. "busy". */
export interface BarPart {
  name: string;
  className: string;
  colour: string;
}

export interface StackedBarPlot extends PlotFrame {
  parts: readonly BarPart[];
  /** One bar per row, its values per part, in the order of `parts`. */
  rows: readonly { label: string; values: readonly number[] }[];
  /** The full length of a bar (100 for shares in %). */
  total: number;
  format: (v: number) => string;
}

const FONT = 'font-family="sans-serif" font-size="11"';
const MARGIN = { left: 56, right: 16, top: 28, bottom: 28 };

/** A line plot over a numeric x domain. */
export function linePlot(p: LinePlot): string {
  const width = p.width ?? 640;
  const height = p.height ?? 220;
  const plotW = width - MARGIN.left - MARGIN.right;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const dataMax = Math.max(0, ...p.series.flatMap((s) => s.points.map((pt) => pt.y ?? 0)));
  const yTicks = p.yMax !== undefined ? niceTicks(p.yMax) : niceTicks(Math.max(dataMax, p.yMinMax ?? 1));
  const yTop = p.yMax ?? yTicks.at(-1)!;
  const xSpan = Math.max(1, p.xMax - p.xMin);
  const px = (x: number) => MARGIN.left + ((Math.min(Math.max(x, p.xMin), p.xMax) - p.xMin) / xSpan) * plotW;
  const py = (y: number) => MARGIN.top + plotH - (Math.min(Math.max(y, 0), yTop) / yTop) * plotH;
  const out: string[] = [open(p, width, height)];
  out.push(`<g class="plot-grid" stroke="#ddd" stroke-width="1">`);
  for (const t of yTicks) out.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${f(py(t))}" y2="${f(py(t))}"/>`);
  out.push('</g>');
  out.push(`<g class="plot-tick" fill="#555" ${FONT}>`);
  for (const t of yTicks) out.push(`<text x="${MARGIN.left - 6}" y="${f(py(t) + 4)}" text-anchor="end">${escapeXml(p.yFormat(t))}</text>`);
  for (const t of p.xTicks) out.push(`<text x="${f(px(t.x))}" y="${height - MARGIN.bottom + 16}" text-anchor="middle">${escapeXml(t.label)}</text>`);
  out.push('</g>');
  out.push(axes(MARGIN.left, MARGIN.top, plotW, plotH));
  for (const s of p.series) {
    out.push(`<g class="plot-series ${escapeXml(s.className)}" fill="none" stroke="${escapeXml(s.colour)}" stroke-width="2">`);
    for (const run of runsOf(s.points)) {
      if (run.length === 1) {
        out.push(`<circle cx="${f(px(run[0]!.x))}" cy="${f(py(run[0]!.y))}" r="2.5" fill="${escapeXml(s.colour)}"/>`);
        continue;
      }
      const pts: string[] = [];
      run.forEach((pt, i) => {
        if (p.steps === true && i > 0) pts.push(`${f(px(pt.x))},${f(py(run[i - 1]!.y))}`);
        pts.push(`${f(px(pt.x))},${f(py(pt.y))}`);
      });
      out.push(`<polyline points="${pts.join(' ')}"/>`);
    }
    out.push('</g>');
  }
  out.push(legend(p.series.map((s) => ({ name: s.name, className: s.className, colour: s.colour })), width));
  out.push('</svg>');
  return out.join('');
}

/** Horizontal stacked bars, one per row (e.g. per worker: busy and idle share). */
export function stackedBarPlot(p: StackedBarPlot): string {
  const width = p.width ?? 640;
  const barH = 18;
  const gap = 8;
  const labelW = 160;
  const left = labelW + 8;
  const plotW = width - left - MARGIN.right;
  const rows = p.rows.length;
  const height = p.height ?? MARGIN.top + Math.max(1, rows) * (barH + gap) + MARGIN.bottom;
  const plotH = height - MARGIN.top - MARGIN.bottom;
  const out: string[] = [open(p, width, height)];
  const total = p.total > 0 ? p.total : 1;
  p.rows.forEach((row, i) => {
    const y = MARGIN.top + i * (barH + gap) + gap / 2;
    const label = row.label.length > 24 ? `${row.label.slice(0, 23)}…` : row.label;
    out.push(`<text class="plot-label" x="${labelW}" y="${f(y + barH / 2 + 4)}" text-anchor="end" fill="#333" ${FONT}>${escapeXml(label)}</text>`);
    let x = left;
    p.parts.forEach((part, j) => {
      const v = Math.max(0, row.values[j] ?? 0);
      const w = (Math.min(v, total) / total) * plotW;
      if (w <= 0) return;
      out.push(
        `<rect class="plot-bar ${escapeXml(part.className)}" x="${f(x)}" y="${f(y)}" width="${f(w)}" height="${barH}" fill="${escapeXml(part.colour)}">` +
          `<title>${escapeXml(`${row.label}: ${part.name} ${p.format(v)}`)}</title></rect>`,
      );
      x += w;
    });
  });
  if (rows === 0) out.push(`<text class="plot-label" x="${f(width / 2)}" y="${f(MARGIN.top + plotH / 2)}" text-anchor="middle" fill="#555" ${FONT}>no data</text>`);
  out.push(`<g class="plot-tick" fill="#555" ${FONT}>`);
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    out.push(`<text x="${f(left + t * plotW)}" y="${height - MARGIN.bottom + 16}" text-anchor="middle">${escapeXml(p.format(t * total))}</text>`);
  }
  out.push('</g>');
  out.push(axes(left, MARGIN.top, plotW, plotH));
  out.push(legend(p.parts, width));
  out.push('</svg>');
  return out.join('');
}

/** 0 and four more even steps of 1, 2 or 5 × 10^k reaching at least `max`. */
export function niceTicks(max: number): number[] {
  const top = max > 0 && Number.isFinite(max) ? max : 1;
  const raw = top / 4;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let i = 0; i * step < top + step / 2 && ticks.length < 5; i++) ticks.push(Number((i * step).toPrecision(12)));
  if (ticks.at(-1)! < top) ticks.push(Number((ticks.length * step).toPrecision(12)));
  return ticks;
}

function open(p: PlotFrame, width: number, height: number): string {
  if (!/^[A-Za-z][\w-]*$/.test(p.id)) throw new Error(`plot id ${JSON.stringify(p.id)}: a letter, then letters, digits, _ or -`);
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" ` +
    `role="img" aria-labelledby="${p.id}-title ${p.id}-desc">` +
    `<title id="${p.id}-title">${escapeXml(p.title)}</title><desc id="${p.id}-desc">${escapeXml(p.description)}</desc>`
  );
}

function axes(x: number, y: number, w: number, h: number): string {
  return `<g class="plot-axis" stroke="#888" stroke-width="1"><line x1="${x}" x2="${x}" y1="${y}" y2="${y + h}"/><line x1="${x}" x2="${x + w}" y1="${y + h}" y2="${y + h}"/></g>`;
}

function legend(items: readonly BarPart[], width: number): string {
  const out = [`<g class="plot-legend" ${FONT} fill="#333">`];
  let x = width - MARGIN.right;
  // Right-aligned, last item rightmost: lay out from the right.
  for (const item of [...items].reverse()) {
    const textW = 7 * item.name.length;
    x -= textW;
    out.push(`<text x="${f(x)}" y="16">${escapeXml(item.name)}</text>`);
    x -= 14;
    out.push(`<rect class="${escapeXml(item.className)}" x="${f(x)}" y="7" width="10" height="10" fill="${escapeXml(item.colour)}"/>`);
    x -= 12;
  }
  out.push('</g>');
  return out.join('');
}

/** The runs of consecutive points with a value: a null breaks the line. */
function runsOf(points: readonly { x: number; y: number | null }[]): { x: number; y: number }[][] {
  const runs: { x: number; y: number }[][] = [];
  let cur: { x: number; y: number }[] = [];
  for (const pt of points) {
    if (pt.y === null || !Number.isFinite(pt.y)) {
      if (cur.length > 0) runs.push(cur);
      cur = [];
    } else cur.push({ x: pt.x, y: pt.y });
  }
  if (cur.length > 0) runs.push(cur);
  return runs;
}

const f = (n: number): string => (Math.round(n * 10) / 10).toString();
