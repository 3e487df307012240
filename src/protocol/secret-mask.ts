/**
 * How secret env values are kept out of a build's log, the rule agent and controller share (as
 * GitHub Actions masks secrets):
 * - every occurrence of a secret value is replaced by `***`, and so is every line of a
 *   multi-line value on its own (a step that prints a key file line by line);
 * - values (and lines) shorter than {@link MIN_SECRET_CHARS} characters are not masked: masking
 *   `1` or `yes` would shred the log and hide nothing worth hiding — do not use such secrets;
 * - the longest value wins where several match at one place.
 *
 * The agent masks its output stream before anything is written or sent ({@link SecretMasker},
 * which holds back a tail that could be the start of a secret until more output or the end
 * shows what it is). The controller masks each chunk again as a defence
 * ({@link maskSameLength}), with as many `*` as the value has bytes so log offsets stay true.
 */

/** Secret values (and lines of values) shorter than this are not masked. */
export const MIN_SECRET_CHARS = 4;

export const MASK = '***';

/** What to look for: the values and each line of multi-line ones, long enough to mask, longest first. */
export function secretNeedles(values: Iterable<string>): string[] {
  const found = new Set<string>();
  for (const v of values) {
    for (const candidate of [v, ...v.split('\n').map((l) => l.replace(/\r$/, ''))]) {
      if (candidate.length >= MIN_SECRET_CHARS) found.add(candidate);
    }
  }
  return [...found].sort((a, b) => b.length - a.length);
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** One regular expression matching any needle, longest first (alternation takes the first that fits). */
function needleRegex(needles: readonly string[]): RegExp | null {
  return needles.length === 0 ? null : new RegExp(needles.map(escape).join('|'), 'g');
}

/** Replaces each occurrence with as many `*` as it has UTF-8 bytes: the text keeps its byte length. */
export function maskSameLength(text: string, needles: readonly string[]): string {
  const re = needleRegex(needles);
  return re ? text.replace(re, (m) => '*'.repeat(Buffer.byteLength(m))) : text;
}

/**
 * Masks a stream of text given in pieces, correctly wherever the pieces are cut: `push` returns
 * what can be shown now and keeps back a tail that may be the start of a secret; `end` returns
 * the rest. What is kept back is never longer than the longest secret plus one match.
 */
export class SecretMasker {
  private values: string[];
  private needles: readonly string[] = [];
  private re: RegExp | null = null;
  private firstChars = new Set<string>();
  private maxLen = 0;
  private held = '';

  constructor(values: Iterable<string>) {
    this.values = [...values];
    this.compile();
  }

  /** Masks these values too, from the text not yet shown on (what is held back included). */
  add(values: Iterable<string>): void {
    this.values.push(...values);
    this.compile();
  }

  private compile(): void {
    this.needles = secretNeedles(this.values);
    this.re = needleRegex(this.needles);
    this.firstChars = new Set(this.needles.map((n) => n[0]!));
    this.maxLen = this.needles[0]?.length ?? 0;
  }

  get active(): boolean {
    return this.re !== null;
  }

  push(text: string): string {
    if (this.re === null) return text;
    const s = this.held + text;
    let cut = s.length;
    // The earliest place from which the rest could still grow into a secret.
    for (let p = Math.max(0, s.length - this.maxLen + 1); p < s.length; p++) {
      if (!this.firstChars.has(s[p]!)) continue;
      const tail = s.slice(p);
      if (this.needles.some((n) => n.length > tail.length && n.startsWith(tail))) {
        cut = p;
        break;
      }
    }
    // A secret running across the cut is kept back whole, to be masked once.
    if (cut < s.length) {
      for (const m of s.matchAll(this.re)) {
        if (m.index >= cut) break;
        if (m.index + m[0].length > cut) {
          cut = m.index;
          break;
        }
      }
    }
    this.held = s.slice(cut);
    return s.slice(0, cut).replace(this.re, MASK);
  }

  end(): string {
    const rest = this.re === null ? this.held : this.held.replace(this.re, MASK);
    this.held = '';
    return rest;
  }
}
