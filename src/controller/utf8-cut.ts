/**
 * Cutting stored log bytes without cutting a UTF-8 character: a reader that decodes each piece
 * on its own (a log event's JSON string, a page of `?limit=`) must never get half of `é` or of
 * an emoji, which would decode as U+FFFD and no longer round-trip byte for byte.
 */

/** Whether `byte` continues a character (10xxxxxx) rather than starting one. */
const isContinuation = (byte: number): boolean => (byte & 0xc0) === 0x80;

/** The length of the character a lead byte starts (1 for ASCII and for a stray byte). */
function charLength(lead: number): number {
  if (lead >= 0xf8) return 1; // never a lead byte in UTF-8
  if (lead >= 0xf0) return 4;
  if (lead >= 0xe0) return 3;
  if (lead >= 0xc0) return 2;
  return 1;
}

/**
 * How many leading bytes of `buf` hold only whole characters: `buf.length`, less an incomplete
 * character at its end (at most 3 bytes). Bytes that are not UTF-8 at all are left as they are.
 */
export function wholeCharsLength(buf: Uint8Array): number {
  const end = buf.length;
  // The last lead byte within the final 4 bytes; its character must fit before the end.
  for (let i = end - 1; i >= 0 && i >= end - 4; i--) {
    const b = buf[i]!;
    if (isContinuation(b)) continue;
    return b < 0x80 || i + charLength(b) <= end ? end : i;
  }
  return end;
}

/** How many continuation bytes `buf` starts with (a start inside a character skips them). */
export function leadingContinuations(buf: Uint8Array): number {
  let n = 0;
  while (n < buf.length && n < 3 && isContinuation(buf[n]!)) n++;
  return n;
}

/**
 * The first `limitBytes` of `bytes` stepped back to a whole character, but never empty while
 * `bytes` is not: a first character longer than the limit comes whole (when `bytes` holds it),
 * so a reader paging by the limit always moves on.
 */
export function pageOf(bytes: Buffer, limitBytes: number): Buffer {
  const whole = wholeCharsLength(bytes.subarray(0, limitBytes));
  return bytes.subarray(0, whole > 0 ? whole : Math.min(bytes.length, 1 + leadingContinuations(bytes.subarray(1))));
}
