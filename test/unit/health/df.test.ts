import { describe, expect, it } from 'vitest';
import { parseDf, parseDfSize } from '../../../src/health/df.ts';

const GNU = `Filesystem      Size  Used Avail Use% Mounted on
/dev/vda        252G   23G   80G  23% /
`;
const GNU_WRAPPED = `Filesystem                                            Size  Used Avail Use% Mounted on
/dev/mapper/very--long--volume--group--name-root
                                                       20G  5.1G   14G  27% /
`;
const MACOS = `Filesystem        Size    Used   Avail Capacity iused ifree %iused  Mounted on
/dev/disk3s1s1   228Gi   9.6Gi   150Gi     7%  404k  1.6G    0%   /
`;
const MACOS_LOW = `Filesystem       Size   Used  Avail Capacity iused ifree %iused  Mounted on
/dev/disk3s1s1   50Gi   48Gi  512Mi    99%  404k  1.6G    0%   /
`;
const SPACES = `Filesystem     Size   Used  Avail Capacity iused ifree %iused  Mounted on
map auto_home    0Bi    0Bi    0Bi   100%     0     0     -   /
`;
const BUSYBOX = `Filesystem                Size      Used Available Use% Mounted on
overlay                  58.4G     12.1G     43.3G  22% /
`;

describe('parseDfSize', () => {
  it.each([
    ['14G', 14],
    ['150Gi', 150],
    ['9.6Gi', 9.6],
    ['5,1G', 5.1],
    ['1T', 1024],
    ['1Ti', 1024],
    ['512M', 0.5],
    ['512Mi', 0.5],
    ['1048576K', 1],
    ['1048576Ki', 1],
    ['0', 0],
    ['0Bi', 0],
  ])('%s = %d GiB', (text, gb) => expect(parseDfSize(text)).toBeCloseTo(gb, 6));

  it('returns NaN for junk', () => expect(parseDfSize('lots')).toBeNaN());
});

describe('parseDf', () => {
  it('parses GNU output', () => expect(parseDf(GNU)).toEqual({ filesystem: '/dev/vda', sizeGb: 252, availGb: 80, mountedOn: '/' }));
  it('parses GNU output with a wrapped device line', () => expect(parseDf(GNU_WRAPPED)).toMatchObject({ sizeGb: 20, availGb: 14 }));
  it('parses macOS output with inode columns', () => expect(parseDf(MACOS)).toMatchObject({ filesystem: '/dev/disk3s1s1', sizeGb: 228, availGb: 150 }));
  it('parses macOS Mi sizes', () => expect(parseDf(MACOS_LOW)?.availGb).toBeCloseTo(0.5));
  it('parses a device name with spaces', () => expect(parseDf(SPACES)).toMatchObject({ filesystem: 'map auto_home', availGb: 0 }));
  it('parses busybox "Available"', () => expect(parseDf(BUSYBOX)?.availGb).toBeCloseTo(43.3));
  it('returns null for non-df output', () => {
    expect(parseDf('df: /: No such file or directory')).toBeNull();
    expect(parseDf('')).toBeNull();
  });
});
