/**
 * The `Content-Disposition` of an artifact download, in one place: the controller's own answer
 * (a local directory) and the presigned S3 URL (`ResponseContentDisposition`) give the same one.
 */

/**
 * `attachment` with the base name of `name`: a plain ASCII fallback (anything else, quotes and
 * backslashes included, becomes `_`) and the exact name in RFC 8187's `filename*`.
 */
export function contentDisposition(name: string): string {
  const base = name.slice(name.lastIndexOf('/') + 1);
  const ascii = base.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(base).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`;
}
