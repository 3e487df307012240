/** The tokens page's data, shared by its GET and by the form that creates a token. */
import { ROLES, roleAtLeast } from '../../protocol/domain.ts';
import type { Principal } from '../auth.ts';
import type { UiContext } from './context.ts';
import { viewerOf } from './render.ts';

/** The tokens page's data; `created` is a token just made, its secret shown this once. */
export async function tokensPage(ctx: UiContext, principal: Principal, created: { name: string; secret: string } | null) {
  const viewer = viewerOf(principal);
  const tokens = await ctx.access.listTokens(principal);
  // A token's role may not be above its maker's: only those are offered (the service refuses the rest too).
  const roles = viewer === null ? [] : ROLES.filter((r) => roleAtLeast(viewer.role, r));
  return { title: 'Tokens', nav: 'tokens', viewer, tokens, roles, created };
}
