/** What the dashboard's plugin is given (UiOptions) and what its page and form routes share (UiContext). */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { CookieSerializeOptions } from '@fastify/cookie';
import type { AccessService } from '../access-service.ts';
import type { ArtifactService } from '../artifact-service.ts';
import type { BuildService } from '../build-service.ts';
import type { ProjectService } from '../project-service.ts';
import type { Store } from '../store/store.ts';
import type { WorkerService } from '../worker-service.ts';
import type { Renderer, Viewer } from './render.ts';

/** The session cookie for a secret, as `reply.setCookie` takes it (access-service's `sessionCookie`); `maxAgeS` 0 clears it. */
export type SessionCookie = (secret: string, o: { secure: boolean; maxAgeS: number }) => { name: string; value: string; options: CookieSerializeOptions };

export interface UiOptions {
  store: Store;
  builds: BuildService;
  workers: WorkerService;
  projects: ProjectService;
  artifacts: ArtifactService;
  access: AccessService;
  /** Makes the session cookie at sign-in (and clears it at sign-out). */
  sessionCookie: SessionCookie;
  /**
   * Whether the session cookie of a request is `Secure`: `--public-url` is https, or the request
   * came over TLS as `req.protocol` says (with `--trust-proxy`, the proxy's X-Forwarded-Proto).
   */
  secureCookies: (requestProtocol: string) => boolean;
  /** How long a session cookie lives, s (the session's TTL). */
  sessionMaxAgeS: number;
  /** The controller's public URL, if set: a sign-in posted from it is same-site too. */
  publicUrl: string | null;
  now: () => number;
}

/** What the page and form routes share. */
export interface UiContext extends UiOptions {
  views: Renderer;
  /** The viewer of a request (the layout's `#whoami`, its role's controls). */
  viewer: (req: FastifyRequest) => Viewer | null;
  /** Answers `name` rendered in the layout with `status`. */
  page: (reply: FastifyReply, status: number, name: string, data: { title: string; nav: string; viewer: Viewer | null } & Record<string, unknown>) => FastifyReply;
}
