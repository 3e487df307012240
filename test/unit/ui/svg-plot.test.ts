/**
 * The SVG plot primitives: ticks, gaps, steps, clipping, escaping and the accessible frame. (That
 * the output parses as XML in a real browser is overview.test.ts's and browser-harness.test.ts's.)
 */
import { describe, expect, it } from 'vitest';
import { escapeXml, linePlot, niceTicks, stackedBarPlot } from '../../../src/controller/ui/svg-plot.ts';

const base = { id: 'p', title: 'T', description: 'D', xMin: 0, xMax: 100, xTicks: [{ x: 0, label: '00:00' }, { x: 100, label: '01:00' }], yFormat: String };
const polylines = (svg: string) => [...svg.matchAll(/<polyline points="([^"]*)"/g)].map((m) => m[1]!.split(' '));

describe('svg plots', () => {
  it('ticks the y axis in even steps of 1, 2, 2.5 or 5 × 10^k from 0 to at least the maximum', () => {
    expect(niceTicks(4)).toEqual([0, 1, 2, 3, 4]);
    expect(niceTicks(7)).toEqual([0, 2, 4, 6, 8]);
    expect(niceTicks(100)).toEqual([0, 25, 50, 75, 100]);
    expect(niceTicks(1)).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect(niceTicks(0)).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect(niceTicks(Number.NaN)).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect(niceTicks(1234).at(-1)).toBeGreaterThanOrEqual(1234);
  });

  it('breaks a line at a missing value, draws a lone value as a dot, and draws steps as levels', () => {
    const svg = linePlot({ ...base, series: [{ name: 's', className: 'series-s', colour: '#000', points: [
      { x: 0, y: 1 }, { x: 10, y: 2 }, { x: 20, y: null }, { x: 30, y: 3 }, { x: 40, y: null }, { x: 50, y: 1 }, { x: 60, y: 1 },
    ] }] });
    expect(polylines(svg).map((p) => p.length)).toEqual([2, 2]);
    expect(svg.match(/<circle /g)).toHaveLength(1);
    const stepped = linePlot({ ...base, steps: true, series: [{ name: 's', className: 'series-s', colour: '#000', points: [{ x: 0, y: 0 }, { x: 50, y: 4 }] }] });
    // A step: across at the old level, then up.
    const [[a, corner, b]] = polylines(stepped) as [[string, string, string]];
    expect(corner.split(',')[1]).toBe(a.split(',')[1]);
    expect(corner.split(',')[0]).toBe(b.split(',')[0]);
  });

  it('clips points outside the domain to its edges', () => {
    const svg = linePlot({ ...base, yMax: 10, series: [{ name: 's', className: 'series-s', colour: '#000', points: [{ x: -50, y: -1 }, { x: 500, y: 99 }] }] });
    const [[from, to]] = polylines(svg) as [[string, string]];
    // The plot area is 56..624 wide and 28..192 high for the default 640 × 220.
    expect(from).toBe('56,192');
    expect(to).toBe('624,28');
  });

  it('escapes every text: title, description, labels, legend, class names and colours', () => {
    const evil = `<script>&"'`;
    const svg = stackedBarPlot({
      id: 'bars', title: evil, description: evil, total: 100, format: (v) => `${v}${evil}`,
      rows: [{ label: evil, values: [40, 60] }],
      parts: [{ name: evil, className: `a" onload="x`, colour: `red" onclick="y` }, { name: 'idle', className: 'series-idle', colour: '#ccc' }],
    });
    expect(svg).not.toMatch(/<script|onload="|onclick="/);
    expect(svg).toContain(escapeXml(evil));
    expect(escapeXml(`<&>"'`)).toBe('&#60;&#38;&#62;&#34;&#39;');
  });

  it('names the plot for assistive technology and refuses an id that would break the markup', () => {
    const svg = linePlot({ ...base, id: 'wait-time', series: [] });
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" class="plot" [^>]*role="img" aria-labelledby="wait-time-title wait-time-desc">/);
    expect(svg).toContain('<title id="wait-time-title">T</title><desc id="wait-time-desc">D</desc>');
    expect(() => linePlot({ ...base, id: 'a" b', series: [] })).toThrow(/plot id/);
  });

  it('draws each bar part in proportion to the total, and says so when there are no rows', () => {
    const svg = stackedBarPlot({ id: 'b', title: 'T', description: 'D', total: 100, format: String, width: 640,
      rows: [{ label: 'w1', values: [25, 75] }],
      parts: [{ name: 'busy', className: 'series-busy', colour: '#00f' }, { name: 'idle', className: 'series-idle', colour: '#ccc' }] });
    const widths = [...svg.matchAll(/<rect class="plot-bar [^"]*" x="[^"]*" y="[^"]*" width="([^"]*)"/g)].map((m) => Number(m[1]));
    expect(widths).toHaveLength(2);
    expect(widths[1]! / widths[0]!).toBeCloseTo(3, 1);
    expect(stackedBarPlot({ id: 'e', title: 'T', description: 'D', total: 100, format: String, rows: [], parts: [] })).toContain('>no data<');
  });
});
