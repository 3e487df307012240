/**
 * The routes the agent calls, method and path only: the rows of the route table (routes.ts)
 * without their schemas, so the agent sends its requests without loading TypeBox. The table
 * stays the one source: the compiler checks each row here against it (`satisfies` on the
 * table's literal types, imported as a type only, so nothing of it loads), and a unit test
 * checks the same at run time.
 */
import type { ROUTES } from './routes.ts';

type Table = typeof ROUTES;
type Rows<K extends keyof Table> = { readonly [N in K]: Pick<Table[N], 'method' | 'path'> };

export const AGENT_ROUTES = {
  poll: { method: 'POST', path: '/api/v1/workers/:id/poll' },
  workerHeartbeat: { method: 'POST', path: '/api/v1/workers/:id/heartbeat' },
  phase: { method: 'POST', path: '/api/v1/builds/:id/phase' },
  appendLog: { method: 'POST', path: '/api/v1/builds/:id/logs' },
  complete: { method: 'POST', path: '/api/v1/builds/:id/complete' },
  checkoutToken: { method: 'POST', path: '/api/v1/builds/:id/checkout-token' },
  uploadArtifact: { method: 'PUT', path: '/api/v1/builds/:id/artifacts/*' },
} as const satisfies Rows<'poll' | 'workerHeartbeat' | 'phase' | 'appendLog' | 'complete' | 'checkoutToken' | 'uploadArtifact'>;
