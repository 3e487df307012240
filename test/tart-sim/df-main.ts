/**
 * The guest's `df` (bind-mounted over /usr/bin/df in the VM's mount namespace): GNU coreutils
 * output for one filesystem, `/dev/vda1` on `/`, sized from the VM's settings — `disk` fault
 * (`diskTotalGb`/`diskFreeGb`) or else disk.img's size and `create --disk-free` / 60 % free.
 * Sizes in the settings are binary GB (GiB), so `df -h` prints them back unchanged.
 *
 * argv: <vmDir> [df options and paths…]; `-h` (what the disk-space check runs) gives human
 * sizes, anything else 1K blocks.
 */
import { writeSync } from 'node:fs';
import { diskSizeGb, readSettings } from './home.ts';

const [vmDir = '', ...args] = process.argv.slice(2);
const settings = readSettings(vmDir);
const totalGb = settings.diskTotalGb ?? diskSizeGb(vmDir);
const freeGb = Math.min(totalGb, settings.diskFreeGb ?? totalGb * 0.6);
const GIB = 1024 ** 3;
const total = Math.round(totalGb * GIB);
const avail = Math.round(freeGb * GIB);
const used = total - avail;

const human = args.some((a) => a === '--human-readable' || /^-[a-zA-Z]*h/.test(a));

/** GNU human_readable (powers of 1024) with ceiling rounding: one decimal below 10, else whole units. */
function humanSize(bytes: number): string {
  const base = 1024;
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

const size = (b: number): string => (human ? humanSize(b) : String(Math.ceil(b / 1024)));
const pct = `${used + avail === 0 ? 0 : Math.ceil((used * 100) / (used + avail))}%`;
const header = ['Filesystem', human ? 'Size' : '1K-blocks', 'Used', human ? 'Avail' : 'Available', 'Use%', 'Mounted on'];
const row = ['/dev/vda1', size(total), size(used), size(avail), pct, '/'];
// coreutils' minimum column widths: source 14, sizes 5, percentage 4 (df.c field_data).
const minWidths = [14, 5, 5, 5, 4, 0];
const widths = header.map((h, i) => Math.max(minWidths[i] ?? 0, h.length, (row[i] ?? '').length));
const line = (cells: string[]): string =>
  cells
    .map((c, i) => (i === cells.length - 1 ? c : i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
    .join(' ');
writeSync(1, `${line(header)}\n${line(row)}\n`);
