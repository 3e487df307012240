/**
 * The dashboard's templates (ui/views/*.eta, rendered with Eta). Every `<%= %>` escapes; the
 * templates use `<%~ %>` (raw) only for markup made and escaped on the server: the overview's SVG
 * plots and ansi_up's log HTML. Each page is rendered inside one layout (ui/views/layout.eta),
 * which shows who is signed in and the navigation their role may use.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Eta } from 'eta';
import type { Role } from '../../protocol/domain.ts';
import { roleAtLeast } from '../../protocol/domain.ts';
import { roleOf, type Principal } from '../auth.ts';

/**
 * The repository's ui/ directory: beside src/ when run from source, beside dist/src/ when built
 * (the package's "files" ship it), found the way the agent finds vm-image/.
 */
export function uiDir(): string {
  for (const rel of ['../../../ui/', '../../../../ui/']) {
    const url = new URL(rel, import.meta.url);
    if (existsSync(new URL('views/layout.eta', url))) return fileURLToPath(url);
  }
  throw new Error('ui/views/layout.eta not found beside the controller');
}

/** Who the layout says is signed in, and what the page may offer them. */
export interface Viewer {
  /** `alice`, a token's name, or `admin key`. */
  name: string;
  role: Role;
  /** The session's CSRF token for every form; empty for a Bearer caller (no cookie, nothing to forge). */
  csrf: string;
  /** Whether a sign-out form makes sense (a dashboard session). */
  session: boolean;
  canOperate: boolean;
  canAdmin: boolean;
}

/** The viewer of a request's principal; null for a worker key or a build token (no role). */
export function viewerOf(p: Principal): Viewer | null {
  const role = roleOf(p);
  if (role === null) return null;
  const name = p.kind === 'session' ? p.user.name : p.kind === 'token' ? p.token.name : 'admin key';
  return {
    name,
    role,
    csrf: p.kind === 'session' ? p.csrfToken : '',
    session: p.kind === 'session',
    canOperate: roleAtLeast(role, 'operator'),
    canAdmin: roleAtLeast(role, 'admin'),
  };
}

/** What every page's template gets besides its own fields. */
export interface PageData {
  title: string;
  /** The navigation entry to mark current. */
  nav: string;
  viewer: Viewer | null;
}

/** Renders ui/views/<name>.eta with `data`. Templates are compiled once and kept. */
export class Renderer {
  private readonly eta: Eta;

  constructor(viewsDir: string) {
    this.eta = new Eta({ views: viewsDir, autoEscape: true, cache: true, autoTrim: false });
  }

  render(name: string, data: PageData & Record<string, unknown>): string {
    return this.eta.render(`./${name}`, data);
  }
}
