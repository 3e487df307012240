/**
 * The bodies the GitHub stand-in answers with: the fields GitHub's OpenAPI description requires
 * of a file's content object, a commit status, a check run and an installation, filled from what
 * was asked (the rest plausible constants).
 */

/** A time as GitHub writes it: ISO 8601 in UTC, whole seconds. */
export const isoSeconds = (ms: number = Date.now()): string => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
const NOW_ISO = (): string => isoSeconds();
/** A repository path as it appears in a URL: each segment encoded. */
const inUrl = (path: string): string => path.split('/').map(encodeURIComponent).join('/');

export function commitStatus(base: string, repo: string, sha: string, id: number, b: Record<string, unknown>): unknown {
  return { url: `${base}/repos/${repo}/statuses/${sha}`, avatar_url: null, id, node_id: `SC_${id}`, state: b.state, description: b.description ?? null, target_url: b.target_url ?? null, context: b.context ?? 'default', created_at: NOW_ISO(), updated_at: NOW_ISO(), creator: null };
}

export function contentFile(base: string, repo: string, path: string, content: string): unknown {
  const url = `${base}/repos/${repo}/contents/${inUrl(path)}`;
  const sha = 'a'.repeat(40);
  return {
    type: 'file',
    encoding: 'base64',
    size: Buffer.byteLength(content),
    name: path.split('/').pop(),
    path,
    content: Buffer.from(content).toString('base64'),
    sha,
    url,
    git_url: `${base}/repos/${repo}/git/blobs/${sha}`,
    html_url: `${base}/${repo}/blob/main/${inUrl(path)}`,
    download_url: null,
    _links: { self: url, git: `${base}/repos/${repo}/git/blobs/${sha}`, html: `${base}/${repo}/blob/main/${inUrl(path)}` },
  };
}

export function checkRun(base: string, repo: string, id: number, b: Record<string, unknown>): unknown {
  const output = (b.output ?? {}) as Record<string, unknown>;
  const status = (b.conclusion !== undefined ? 'completed' : (b.status ?? 'queued')) as string;
  return {
    id,
    node_id: `CR_${id}`,
    head_sha: b.head_sha,
    name: b.name,
    external_id: b.external_id ?? null,
    url: `${base}/repos/${repo}/check-runs/${id}`,
    html_url: `${base}/${repo}/runs/${id}`,
    details_url: b.details_url ?? null,
    status,
    conclusion: b.conclusion ?? null,
    started_at: NOW_ISO(),
    completed_at: status === 'completed' ? NOW_ISO() : null,
    output: { title: output.title ?? null, summary: output.summary ?? null, text: output.text ?? null, annotations_count: 0, annotations_url: `${base}/repos/${repo}/check-runs/${id}/annotations` },
    check_suite: { id: 1 },
    app: null,
    pull_requests: [],
  };
}

export function installation(base: string, id: number, appId: number): unknown {
  return {
    id,
    app_id: appId,
    app_slug: 'expo-worker',
    target_id: 1,
    target_type: 'Organization',
    single_file_name: null,
    repository_selection: 'selected',
    access_tokens_url: `${base}/app/installations/${id}/access_tokens`,
    html_url: `${base}/organizations/acme/settings/installations/${id}`,
    repositories_url: `${base}/installation/repositories`,
    events: ['push', 'pull_request', 'check_run'],
    account: null,
    permissions: { contents: 'read', statuses: 'write', checks: 'write', metadata: 'read' },
    created_at: NOW_ISO(),
    updated_at: NOW_ISO(),
    suspended_by: null,
    suspended_at: null,
  };
}

export function directoryEntry(base: string, repo: string, path: string, type: 'file' | 'dir'): unknown {
  const url = `${base}/repos/${repo}/contents/${inUrl(path)}`;
  const sha = 'b'.repeat(40);
  return { type, size: 0, name: path.split('/').pop(), path, sha, url, git_url: null, html_url: null, download_url: null, _links: { self: url, git: null, html: null } };
}
