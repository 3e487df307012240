/**
 * What GitHub shows of a build, in words, within GitHub's limits: a commit status's state and
 * description, a check run's conclusion and output (title, summary, the log's tail in a code
 * block), and the link to the build. Pure functions of the build record; the reporter
 * (`github-reporter.ts`) decides when to send them.
 */
import { stripVTControlCharacters } from 'node:util';
import { isFinalStatus, isInfraFailure, type FailureReason } from '../protocol/domain.ts';
import type { CheckRunConclusion, CheckRunOutput, CommitState } from '../github/api.ts';
import type { BuildRecord } from './store/store.ts';

/** GitHub's limits (REST API: commit statuses, check runs). */
export const DESCRIPTION_MAX_CHARS = 140;
export const TITLE_MAX_CHARS = 255;
export const OUTPUT_MAX_CHARS = 65_535;
/** How much of the log a completed check run shows: the last lines, within both limits. */
export const TAIL_MAX_LINES = 100;
export const TAIL_MAX_BYTES = 60_000;
const MESSAGE_MAX_CHARS = 2_000;

/** `<publicUrl>/builds/<id>`, or null without a public URL. */
export function buildUrl(publicUrl: string | null, id: string): string | null {
  return publicUrl === null ? null : `${publicUrl.replace(/\/+$/, '')}/builds/${id}`;
}

/** A commit status's state: the build's own failure is `failure`; the farm's, or a cancel, `error`. */
export function commitState(b: BuildRecord): CommitState {
  switch (b.status) {
    case 'queued':
    case 'assigned':
    case 'preparing':
    case 'running':
      return 'pending';
    case 'succeeded':
      return 'success';
    case 'cancelled':
      return 'error';
    case 'failed':
      return b.failureReason !== null && !isInfraFailure(b.failureReason) ? 'failure' : 'error';
    default: {
      const never: never = b.status;
      throw new Error(`unknown build status ${String(never)}`);
    }
  }
}

/** A check run's conclusion; an infrastructure failure is `failure` (its title says why). */
export function conclusion(b: BuildRecord): CheckRunConclusion {
  if (b.status === 'succeeded') return 'success';
  if (b.status === 'cancelled') return 'cancelled';
  return b.failureReason === 'timed_out' ? 'timed_out' : 'failure';
}

const REASON_WORDS: Record<FailureReason, string> = {
  build_failed: 'a step failed',
  timed_out: 'timed out',
  artifact_missing: 'a required artifact is missing',
  prepare_timeout: 'the VM was not ready in time (infrastructure)',
  vm_unhealthy: 'the VM was unhealthy (infrastructure)',
  vm_crashed: 'the VM crashed (infrastructure)',
  heartbeat_timeout: 'the build stopped sending heartbeats (infrastructure)',
  worker_lost: 'its worker went silent (infrastructure)',
};

/** A queued or in-progress check run's output: what the build is doing (`Running on mac-1`), in words. */
export function pendingOutput(b: BuildRecord): CheckRunOutput {
  const title = capitalized(clip(pendingWords(b), TITLE_MAX_CHARS));
  return { title, summary: `${title}.` };
}

/** What a queued or active build is doing, in words. */
function pendingWords(b: BuildRecord): string {
  const on = b.workerId === null ? '' : ` on ${b.workerId}`;
  switch (b.status) {
    case 'assigned':
      return `assigned${on}`;
    case 'preparing':
      return `preparing a VM${on}`;
    case 'running':
      return `running${on}`;
    default:
      return 'queued';
  }
}

/** How a final build ended, in words, without its message. */
export function endWords(b: BuildRecord): string {
  const took = duration(b);
  switch (b.status) {
    case 'succeeded':
      return took === null ? 'succeeded' : `succeeded in ${took}`;
    case 'cancelled':
      return 'cancelled';
    default: {
      if (b.failureReason === null) return 'failed';
      const words = REASON_WORDS[b.failureReason];
      if (b.failureReason === 'timed_out') return `timed out after ${b.timeoutS} s`;
      if (b.failureReason === 'build_failed' && b.exitCode !== null) return `failed: ${words} (exit ${b.exitCode})`;
      return `failed: ${words}`;
    }
  }
}

/** One line, at most `max` characters (code points), cut with `…`. */
export function clip(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join('')}…`;
}

const capitalized = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);
/** Control characters a terminal would act on (bell, backspace…) but a web page shows as junk; not tab or newline. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g;
const oneLine = (s: string): string => stripVTControlCharacters(s).replace(/\s+/g, ' ').replace(CONTROL, '').trim();

/** The commit status's description: the state and, for an end, the reason and message. */
export function description(b: BuildRecord): string {
  if (!isFinalStatus(b.status)) return clip(pendingWords(b), DESCRIPTION_MAX_CHARS);
  const message = b.message === null ? '' : oneLine(b.message);
  return clip(message === '' || b.status === 'succeeded' ? endWords(b) : `${endWords(b)}: ${message}`, DESCRIPTION_MAX_CHARS);
}

function duration(b: BuildRecord): string | null {
  const from = b.startedAt ?? b.assignedAt;
  if (from === null || b.finishedAt === null) return null;
  const s = Math.max(0, Math.round((b.finishedAt - from) / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h ${m}m ${s % 60}s` : m > 0 ? `${m}m ${s % 60}s` : `${s}s`;
}

/** A Markdown code block around `text`, its fence longer than any run of backticks inside. */
function fenced(text: string): string {
  const longest = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = '`'.repeat(Math.max(3, longest + 1));
  return `${fence}\n${text}\n${fence}`;
}

/**
 * The end of a log for a check run: terminal escapes stripped, each line as a terminal last
 * showed it (after its last carriage return), the last `TAIL_MAX_LINES` lines. `cut`: the bytes
 * start inside the log, so the first line is partial and dropped.
 */
export function logTail(bytes: Buffer, cut: boolean): string {
  let lines = stripVTControlCharacters(bytes.toString('utf8')).split('\n');
  if (cut) lines = lines.slice(1);
  if (lines.at(-1) === '') lines.pop();
  return lines
    .slice(-TAIL_MAX_LINES)
    .map((l) => (l.split('\r').findLast((part) => part !== '') ?? '').replace(CONTROL, ''))
    .join('\n');
}

/** A completed check run's output: title (how it ended), summary (why, where, how long) and the log tail. */
export function checkRunOutput(b: BuildRecord, tail: string, link: string | null): CheckRunOutput {
  const message = b.message === null ? '' : clip(b.message.trim(), MESSAGE_MAX_CHARS);
  const said = oneLine(b.status === 'cancelled' && message !== '' ? `cancelled: ${message}` : endWords(b));
  const title = capitalized(clip(said, TITLE_MAX_CHARS));
  const rows = [
    `**Status:** ${b.status}`,
    ...(b.failureReason === null ? [] : [`**Failure reason:** \`${b.failureReason}\` — ${REASON_WORDS[b.failureReason]}`]),
    `**Attempt:** ${b.attempt} of ${b.maxAttempts}`,
    ...(duration(b) === null ? [] : [`**Duration:** ${duration(b)}`]),
    ...(b.workerId === null ? [] : [`**Worker:** \`${b.workerId}\``]),
    `**Build:** ${link === null ? `\`${b.id}\`` : `[${b.id}](${link})`}`,
  ];
  const summary = [rows.join('  \n'), ...(message === '' ? [] : ['**Message:**', fenced(message)])].join('\n\n');
  const heading = tail === '' ? 'The log is empty.' : `The last ${tail.split('\n').length} lines of the log${link === null ? '' : ` ([full log](${link}))`}:`;
  // Room for the heading and fences: the tail is cut (keeping its end), never the block around it.
  return { title, summary: clip(summary, OUTPUT_MAX_CHARS), text: tail === '' ? heading : `${heading}\n\n${fenced(clipStart(tail, OUTPUT_MAX_CHARS - 1_000))}` };
}

/** Keeps the end of `text` when it is too long (a log's end is what says why). */
function clipStart(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : `…${chars.slice(chars.length - max + 1).join('')}`;
}
