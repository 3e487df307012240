/**
 * A pipeline build's `on:` block — which GitHub events build it — and the choice of builds for
 * one event (`triggers`). Pure functions: an event's branch or tag name is only ever compared
 * with glob patterns here, never handed to a shell.
 *
 * The rules (docs/pipeline-file.md says the same):
 * - no `on`: every push to a branch and every pull request; no tag.
 * - `push: {}` (or `push:` alone): every branch push. `push: {branches}`: the branches matching
 *   one of the globs. `push: {tags}`: tags matching one of the globs, and then branch pushes only
 *   when `branches` is given too (as GitHub Actions reads `on.push`).
 * - `pull_request: {}`: every pull request; `{branches}`: those whose base branch matches.
 * - `tag: {}`: every tag push.
 * Globs: `*` is any run of characters but `/`, `**` any run including `/`; all else is literal.
 */

/** The most globs one `branches` or `tags` list may hold, and the longest glob in UTF-8 bytes. */
export const TRIGGER_LIMITS = { maxGlobs: 100, maxGlobBytes: 255 } as const;

export interface PushTrigger {
  branches?: string[];
  tags?: string[];
}
export interface PullRequestTrigger {
  branches?: string[];
}
/** A build's triggers as the file gives them (after validation); a key absent: that event never builds it. */
export interface Triggers {
  push?: PushTrigger;
  pull_request?: PullRequestTrigger;
  tag?: Record<string, never>;
}

/** An event as `triggers` reads it: a branch push, a tag push, or a pull request (by its base branch). */
export type PipelineEvent = { kind: 'push'; branch: string } | { kind: 'tag'; tag: string } | { kind: 'pull_request'; baseBranch: string };

/** A problem found in an `on:` block: the path below `on` (`['push', 'branches', 0]`) and what is wrong. */
export interface TriggerProblem {
  path: (string | number)[];
  message: string;
  /** Point at the key itself (an unknown key) rather than its value. */
  atKey?: boolean;
}

const TRIGGER_KEYS: Record<string, readonly string[]> = { push: ['branches', 'tags'], pull_request: ['branches'], tag: [] };

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Checks an `on:` value; returns the triggers, or the problems (every one). */
export function checkTriggers(value: unknown): { triggers: Triggers; problems: TriggerProblem[] } {
  const problems: TriggerProblem[] = [];
  const triggers: Triggers = {};
  if (!isPlainObject(value)) {
    problems.push({ path: [], message: 'must be a map of events: push, pull_request, tag' });
    return { triggers, problems };
  }
  for (const [event, raw] of Object.entries(value)) {
    const allowed = TRIGGER_KEYS[event];
    if (allowed === undefined || !Object.hasOwn(TRIGGER_KEYS, event)) {
      problems.push({ path: [event], message: `unknown event '${event}'; the events are push, pull_request, tag`, atKey: true });
      continue;
    }
    // `push:` alone (null) means the same as `push: {}`.
    const body = raw === null ? {} : raw;
    if (!isPlainObject(body)) {
      problems.push({ path: [event], message: `must be a map (${allowed.length > 0 ? `with optional ${allowed.join(', ')}` : 'empty'}) or nothing` });
      continue;
    }
    const out: Record<string, string[]> = {};
    for (const [key, list] of Object.entries(body)) {
      if (!allowed.includes(key)) {
        problems.push({ path: [event, key], message: `unknown key '${key}' under ${event}${allowed.length > 0 ? `; allowed: ${allowed.join(', ')}` : '; it takes no keys'}`, atKey: true });
        continue;
      }
      const globs = checkGlobList(list, [event, key], problems);
      if (globs !== null) out[key] = globs;
    }
    if (event === 'push') triggers.push = out;
    else if (event === 'pull_request') triggers.pull_request = out;
    else triggers.tag = {};
  }
  return { triggers, problems };
}

function checkGlobList(list: unknown, path: (string | number)[], problems: TriggerProblem[]): string[] | null {
  if (!Array.isArray(list)) {
    problems.push({ path, message: 'must be a list of glob patterns' });
    return null;
  }
  let ok = true;
  if (list.length === 0) {
    problems.push({ path, message: 'must hold at least one pattern (leave the key out to match everything)' });
    ok = false;
  }
  if (list.length > TRIGGER_LIMITS.maxGlobs) {
    problems.push({ path, message: `must hold at most ${TRIGGER_LIMITS.maxGlobs} patterns (this one has ${list.length})` });
    return null;
  }
  list.forEach((glob: unknown, i) => {
    const problem = globProblem(glob);
    if (problem !== null) {
      problems.push({ path: [...path, i], message: problem });
      ok = false;
    }
  });
  return ok ? (list as string[]) : null;
}

function globProblem(glob: unknown): string | null {
  if (typeof glob !== 'string') return 'a pattern must be a string (quote it)';
  if (glob.length === 0) return 'a pattern must not be empty';
  if (Buffer.byteLength(glob, 'utf8') > TRIGGER_LIMITS.maxGlobBytes) return `a pattern is at most ${TRIGGER_LIMITS.maxGlobBytes} bytes`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(glob)) return 'a pattern must not hold control characters';
  return null;
}

type GlobToken = { kind: 'star' } | { kind: 'globstar' } | { kind: 'char'; c: string };

function tokens(glob: string): GlobToken[] {
  const out: GlobToken[] = [];
  for (let i = 0; i < glob.length; i++) {
    if (glob[i] === '*' && glob[i + 1] === '*') {
      // Runs of stars are one globstar: `***` means what `**` does.
      while (glob[i + 1] === '*') i++;
      out.push({ kind: 'globstar' });
    } else if (glob[i] === '*') out.push({ kind: 'star' });
    else out.push({ kind: 'char', c: glob[i]! });
  }
  return out;
}

/**
 * Whether `name` matches `glob`: `**` any characters, `*` any but `/`, everything else literal.
 * A table over (glob position × name position), so its time is at most their product
 * (255 × 255 for the longest of each), whatever the pattern: a regular expression built from
 * the glob would backtrack exponentially on patterns like `*a*a*a…x` (a pipeline's author picks
 * the glob and a pusher the branch name; neither may freeze the controller).
 */
export function globMatches(glob: string, name: string): boolean {
  const t = tokens(glob);
  // row[j]: whether the tokens so far match name[0..j).
  let row = new Array<boolean>(name.length + 1).fill(false);
  row[0] = true;
  for (const tok of t) {
    const next = new Array<boolean>(name.length + 1).fill(false);
    for (let j = 0; j <= name.length; j++) {
      if (tok.kind === 'char') next[j] = j > 0 && row[j - 1]! && name[j - 1] === tok.c;
      else if (tok.kind === 'globstar') next[j] = row[j]! || (j > 0 && next[j - 1]!);
      else next[j] = row[j]! || (j > 0 && next[j - 1]! && name[j - 1] !== '/');
    }
    row = next;
  }
  return row[name.length]!;
}

const anyMatches = (globs: string[] | undefined, name: string): boolean => globs === undefined || globs.some((g) => globMatches(g, name));

/** Whether a build with these triggers (`null`: no `on` block, the default) builds on the event. */
export function triggeredBy(on: Triggers | null, event: PipelineEvent): boolean {
  switch (event.kind) {
    case 'push': {
      if (on === null) return true;
      const push = on.push;
      if (push === undefined) return false;
      if (push.branches === undefined && push.tags !== undefined) return false;
      return anyMatches(push.branches, event.branch);
    }
    case 'tag': {
      if (on === null) return false;
      if (on.tag !== undefined) return true;
      return on.push?.tags !== undefined && anyMatches(on.push.tags, event.tag);
    }
    case 'pull_request': {
      if (on === null) return true;
      return on.pull_request !== undefined && anyMatches(on.pull_request.branches, event.baseBranch);
    }
    default: {
      const never: never = event;
      throw new Error(`unknown event ${JSON.stringify(never)}`);
    }
  }
}
