/**
 * The agent's LaunchDaemon plist: the template in `launchd/com.expo-worker.agent.plist` with its
 * `{{NAME}}` placeholders filled in, every value XML-escaped. Pure apart from reading the
 * template; `install.ts` decides the values and what to do with the result.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ExpoError } from '../protocol/errors.ts';

/** The launchd label, and so the service name `system/com.expo-worker.agent`. */
export const AGENT_LABEL = 'com.expo-worker.agent';
/** Where LaunchDaemons live. */
export const DEFAULT_PLIST_PATH = `/Library/LaunchDaemons/${AGENT_LABEL}.plist`;
/** Default directory of the agent's stdout/stderr files. */
export const DEFAULT_LOG_DIR = '/Library/Logs/expo-worker';
/** PATH for the agent: Homebrew on Apple Silicon and Intel first (tart lives there), then the system. */
export const AGENT_PATH = '/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin';
/** Seconds launchd waits before restarting a job that exited, so a crash loop cannot spin. */
export const THROTTLE_INTERVAL_S = 10;
/** Default seconds between SIGTERM and SIGKILL: an hour, the controller's default build timeout, so a drain can finish. */
export const DEFAULT_EXIT_TIMEOUT_S = 3600;

/** The values the template needs. Every path is absolute. */
export interface PlistValues {
  /** The node executable (`process.execPath` unless overridden). */
  nodePath: string;
  /** The built CLI, `dist/src/cli.js`. */
  cliPath: string;
  /** The agent's config file. */
  configPath: string;
  /** The user who owns the Tart VMs; the agent runs as this user. */
  userName: string;
  /** That user's home (HOME and the working directory). */
  homeDir: string;
  /** Directory of `agent.log` and `agent.err.log`. */
  logDir: string;
  /** Seconds launchd gives the agent to drain after SIGTERM. */
  exitTimeoutS: number;
}

const here = fileURLToPath(import.meta.url);
/** True when running from `dist/src/host/` (built), false from `src/host/` (development). */
const built = here.endsWith('.js');

/** The package root: `src/host/` is two levels below it, `dist/src/host/` three. */
const packageRoot = resolve(dirname(here), built ? '../../..' : '../..');

/** The built CLI the LaunchDaemon runs, resolved from this module's own location. */
export const builtCliPath = (): string => resolve(packageRoot, 'dist/src/cli.js');

/** The plist template shipped in the package. */
export const templatePath = (): string => resolve(packageRoot, 'launchd', `${AGENT_LABEL}.plist`);

const XML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

/** Escapes text for an XML element or attribute. */
export const xmlEscape = (text: string): string => text.replace(/[&<>"']/g, (ch) => XML_ESCAPES[ch] ?? ch);

/** Fills the template. Refuses a placeholder it has no value for, or a value left unused. */
export function renderPlist(template: string, v: PlistValues): string {
  const values: Record<string, string> = {
    NODE_PATH: v.nodePath,
    CLI_PATH: v.cliPath,
    CONFIG_PATH: v.configPath,
    USER_NAME: v.userName,
    HOME_DIR: v.homeDir,
    PATH_VALUE: AGENT_PATH,
    STDOUT_PATH: resolve(v.logDir, 'agent.log'),
    STDERR_PATH: resolve(v.logDir, 'agent.err.log'),
    THROTTLE_INTERVAL_S: String(THROTTLE_INTERVAL_S),
    EXIT_TIMEOUT_S: String(v.exitTimeoutS),
  };
  const used = new Set<string>();
  const text = template.replace(/\{\{([A-Z_]+)\}\}/g, (_match, name: string) => {
    const value = values[name];
    if (value === undefined) throw new ExpoError('CFG_INVALID', `the plist template has an unknown placeholder {{${name}}}`);
    used.add(name);
    return xmlEscape(value);
  });
  const unused = Object.keys(values).filter((k) => !used.has(k));
  if (unused.length > 0) throw new ExpoError('CFG_INVALID', `the plist template lacks ${unused.map((k) => `{{${k}}}`).join(', ')}`);
  return text;
}

/** Reads the shipped template and fills it. */
export function agentPlist(values: PlistValues): string {
  let template: string;
  try {
    template = readFileSync(templatePath(), 'utf8');
  } catch (err) {
    throw new ExpoError('CFG_INVALID', `cannot read the plist template ${templatePath()}: ${(err as NodeJS.ErrnoException).code}`, { cause: err });
  }
  return renderPlist(template, values);
}
