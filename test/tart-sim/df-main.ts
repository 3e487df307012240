/**
 * The guest's `df` (bind-mounted over /usr/bin/df in the VM's mount namespace): GNU coreutils
 * output for one filesystem, `/dev/vda1` on `/`, sized from the VM's settings — `disk` fault
 * (`diskTotalGb`/`diskFreeGb`) or else disk.img's size and TART_SIM_DISK_FREE_GB / 60 % free.
 * Sizes in the settings are binary GB (GiB), so `df -h` prints them back unchanged.
 *
 * argv: <vmDir> [df options and paths…]; supports -h, -H, -k, -m, -P (others are ignored).
 */
import { writeSync } from 'node:fs';
import { diskSizeGb, readSettings } from './home.ts';

const [vmDir = '', ...args] = process.argv.slice(2);
const settings = readSettings(vmDir);
const totalGb = settings.diskTotalGb ?? diskSizeGb(vmDir);
const envFree = process.env.TART_SIM_DISK_FREE_GB;
const freeGb = Math.min(totalGb, settings.diskFreeGb ?? (envFree !== undefined ? Number(envFree) : totalGb * 0.6));
const GIB = 1024 ** 3;
const total = Math.round(totalGb * GIB);
const avail = Math.round(freeGb * GIB);
const used = total - avail;

const opts = new Set(args.filter((a) => a.startsWith('-')).flatMap((a) => (a.startsWith('--') ? [a] : [...a.slice(1)].map((c) => `-${c}`))));
const human = opts.has('-h') || opts.has('--human-readable') ? 1024 : opts.has('-H') || opts.has('--si') ? 1000 : 0;
const posix = opts.has('-P') || opts.has('--portability');
const blockSize = opts.has('-m') ? 1024 * 1024 : 1024;

/** GNU human_readable with ceiling rounding: one decimal below 10, else whole units. */
function humanSize(bytes: number, base: number): string {
  const units = ['', 'K', 'M', 'G', 'T', 'P'];
  let value = bytes;
  let u = 0;
  while (value >= base && u < units.length - 1) {
    value /= base;
    u++;
  }
  if (u === 0) return String(bytes);
  if (value < 10) {
    const tenth = Math.ceil(value * 10 - 1e-9) / 10;
    if (tenth < 10) return `${tenth.toFixed(1)}${units[u]}`;
  }
  let whole = Math.ceil(value - 1e-9);
  if (whole >= base && u < units.length - 1) {
    whole = 1;
    u++;
    return `${whole.toFixed(1)}${units[u]}`;
  }
  return `${whole}${units[u]}`;
}

const size = (b: number): string => (human > 0 ? humanSize(b, human) : String(Math.ceil(b / blockSize)));
const pct = `${used + avail === 0 ? 0 : Math.ceil((used * 100) / (used + avail))}%`;
const sizeHeader = human > 0 ? 'Size' : posix ? `${blockSize}-blocks` : blockSize === 1024 ? '1K-blocks' : '1M-blocks';
const header = ['Filesystem', sizeHeader, 'Used', human > 0 ? 'Avail' : 'Available', posix ? 'Capacity' : 'Use%', 'Mounted on'];
const row = ['/dev/vda1', size(total), size(used), size(avail), pct, '/'];
// coreutils' minimum column widths: source 14, sizes 5, percentage 4 (df.c field_data).
const minWidths = [14, 5, 5, 5, 4, 0];
const widths = header.map((h, i) => Math.max(minWidths[i] ?? 0, h.length, (row[i] ?? '').length));
const line = (cells: string[]): string =>
  cells
    .map((c, i) => (i === cells.length - 1 ? c : i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
    .join(' ');
writeSync(1, `${line(header)}\n${line(row)}\n`);
