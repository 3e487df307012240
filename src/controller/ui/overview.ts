/**
 * The overview page's figures and plots, from what the controller already keeps (builds and
 * attempts of the last 24 h): queue depth and wait time, build duration and success rate, each
 * Mac's busy/idle share. Plots are server-rendered SVG (no script, no inline style: the CSP
 * allows neither), so the page reads at a glance without JavaScript.
 *
 * (Skeleton of the contract: the overview work fills it in.)
 */
import type { Store } from '../store/store.ts';

export type OverviewStore = Pick<Store, 'listBuildsSince' | 'listAttemptsSince' | 'listWorkers' | 'countBuildsByStatus'>;

/** One plot: a title people read, the SVG markup (trusted: made here, every text in it escaped), and a sentence for screen readers. */
export interface OverviewPlot {
  id: string;
  title: string;
  svg: string;
  summary: string;
}

/** One headline figure: `Queued now: 3`. */
export interface OverviewFigure {
  label: string;
  value: string;
}

export interface OverviewModel {
  /** The window the plots cover, ms: 24 h. */
  windowMs: number;
  figures: OverviewFigure[];
  plots: OverviewPlot[];
}

export function overviewModel(_store: OverviewStore, _now: number): Promise<OverviewModel> {
  return Promise.reject(new Error('overviewModel is not written yet'));
}
