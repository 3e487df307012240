/**
 * Parsing `df -h /`. GNU coreutils and macOS/BSD print different columns (macOS adds inode
 * columns and calls `Use%` `Capacity`) and different units (`14G` vs `150Gi`); both use powers of
 * 1024 with `-h`. A long device name may wrap the data onto a second line (older GNU), and a
 * device name may contain spaces (macOS `map auto_home`), so columns are counted from the header.
 */

/** Free and total space of one filesystem, in GiB (2^30 bytes — df -h's `G`). */
export interface DiskUsage {
  filesystem: string;
  sizeGb: number;
  availGb: number;
  mountedOn: string;
}

const POWERS: Record<string, number> = { '': 0, B: 0, K: 1, M: 2, G: 3, T: 4, P: 5, E: 6 };

/** Parses one df -h size (`14G`, `150Gi`, `9.6Gi`, `5,1G`, `512K`, `0`) to GiB; NaN if unparseable. */
export function parseDfSize(text: string): number {
  const m = /^(\d+(?:[.,]\d+)?)([BKMGTPE]?)(?:i?B?)$/i.exec(text.trim());
  if (!m) return Number.NaN;
  const value = Number((m[1] as string).replace(',', '.'));
  const power = POWERS[(m[2] as string).toUpperCase()] ?? 0;
  return (value * 1024 ** power) / 1024 ** 3;
}

/** Parses the output of `df -h /` (or `df -h PATH`); null when it is not df output. */
export function parseDf(output: string): DiskUsage | null {
  const lines = output.split('\n').filter((l) => l.trim() !== '');
  const headerIndex = lines.findIndex((l) => /^Filesystem\s/.test(l.trim()));
  if (headerIndex < 0) return null;
  const header = (lines[headerIndex] as string).trim().replace(/Mounted on/, 'Mounted_on').split(/\s+/);
  const availIndex = header.findIndex((h) => /^Avail(able)?$/.test(h));
  const sizeIndex = header.findIndex((h) => /^(Size|\d*[KMG]?-?blocks)$/i.test(h));
  if (availIndex < 0 || sizeIndex < 0) return null;
  const tokens = lines
    .slice(headerIndex + 1)
    .join(' ')
    .trim()
    .split(/\s+/);
  const extra = tokens.length - header.length;
  if (extra < 0) return null;
  const sizeGb = parseDfSize(tokens[sizeIndex + extra] ?? '');
  const availGb = parseDfSize(tokens[availIndex + extra] ?? '');
  if (Number.isNaN(sizeGb) || Number.isNaN(availGb)) return null;
  return {
    filesystem: tokens.slice(0, extra + 1).join(' '),
    sizeGb,
    availGb,
    mountedOn: tokens.at(-1) ?? '',
  };
}
