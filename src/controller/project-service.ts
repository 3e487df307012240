/**
 * Projects: the GitHub repositories the farm builds, one project per repository (matched
 * without regard to case, as GitHub does), each with its pipeline file's path, its supersession
 * switch and its secrets.
 *
 * A secret is write-only: its value is sealed (`SecretBox`, associated data
 * `project:<id>:<name>`, so a sealed value cannot be moved to another project or name) before it
 * reaches the store, never shown by the API, never logged; only its name and when it was last
 * set are. Values too short to mask in a build's log are refused, as for a build's secret env.
 * `secretValues` opens them for the builds a delivery makes (or a rerun).
 */
import { ExpoError } from '../protocol/errors.ts';
import type { CreateProjectBody } from '../protocol/schemas.ts';
import { MIN_SECRET_CHARS } from '../protocol/secret-mask.ts';
import { newBuildId } from './auth.ts';
import type { SecretBox } from './secret-box.ts';
import type { ProjectRecord, Store } from './store/store.ts';

/** Where a project's pipeline file is when its registration names none. */
export const DEFAULT_PIPELINE_PATH = '.expo-worker.yml';

/** What the project service reads and writes. */
export type ProjectStore = Pick<
  Store,
  'createProject' | 'getProject' | 'getProjectByRepo' | 'listProjects' | 'deleteProject' | 'putProjectSecret' | 'deleteProjectSecret' | 'getProjectSecrets'
>;

export interface ProjectServiceOptions {
  store: ProjectStore;
  /** The time source, in ms since the epoch. */
  now: () => number;
  /** Seals secret values at rest (the same key as builds' secret env). */
  secrets: SecretBox;
}

/** The associated data a project secret is sealed under. */
const sealedAs = (projectId: string, name: string): string => `project:${projectId}:${name}`;

export class ProjectService {
  private readonly o: ProjectServiceOptions;

  constructor(options: ProjectServiceOptions) {
    this.o = options;
  }

  /** Registers a project; 409 PROJECT_EXISTS when its repository (any case) has one. */
  async create(body: CreateProjectBody): Promise<ProjectRecord> {
    return this.o.store.createProject({
      id: newBuildId(),
      repo: body.repo,
      pipelinePath: body.pipelinePath ?? DEFAULT_PIPELINE_PATH,
      supersede: body.supersede ?? true,
      createdAt: this.o.now(),
    });
  }

  /** The project; 404 when there is none by that id. */
  async get(id: string): Promise<ProjectRecord> {
    const p = await this.o.store.getProject(id);
    if (!p) throw new ExpoError('API_NOT_FOUND', `no project '${id}'`);
    return p;
  }

  /** The project of `owner/name` (any case), or null: a delivery for a repository without one is ignored. */
  async byRepo(repo: string): Promise<ProjectRecord | null> {
    return this.o.store.getProjectByRepo(repo);
  }

  /** Every project, by repository. */
  async list(): Promise<ProjectRecord[]> {
    return this.o.store.listProjects();
  }

  /** Deletes the project and its secrets; its builds stay. 404 when there is none. */
  async delete(id: string): Promise<void> {
    if (!(await this.o.store.deleteProject(id))) throw new ExpoError('API_NOT_FOUND', `no project '${id}'`);
  }

  /** Sets (or replaces) a secret; 404 for an unknown project, 400 for a value too short to mask. */
  async putSecret(projectId: string, name: string, value: string): Promise<{ name: string; updatedAt: number }> {
    // A value too short to mask would show in the log as it is: refused rather than leaked.
    if (value.length < MIN_SECRET_CHARS) {
      throw new ExpoError('API_BAD_REQUEST', `secret ${name}: a secret value must have at least ${MIN_SECRET_CHARS} characters (shorter ones cannot be masked in the log)`);
    }
    const now = this.o.now();
    const sealed = this.o.secrets.seal(sealedAs(projectId, name), { [name]: value });
    if (!(await this.o.store.putProjectSecret(projectId, name, sealed, now))) throw new ExpoError('API_NOT_FOUND', `no project '${projectId}'`);
    return { name, updatedAt: now };
  }

  /** Deletes a secret; 404 when the project or the secret does not exist. */
  async deleteSecret(projectId: string, name: string): Promise<void> {
    if (await this.o.store.deleteProjectSecret(projectId, name)) return;
    await this.get(projectId);
    throw new ExpoError('API_NOT_FOUND', `project '${projectId}' has no secret ${name}`);
  }

  /**
   * The current values of the named secrets of a project, and the names it has no secret for.
   * 404 when the project is gone; STORE_FAILED when a value cannot be opened (the key was replaced).
   */
  async secretValues(projectId: string, names: readonly string[]): Promise<{ values: Record<string, string>; missing: string[] }> {
    await this.get(projectId);
    const stored = new Map((await this.o.store.getProjectSecrets(projectId)).map((s) => [s.name, s.sealed]));
    const values: Record<string, string> = {};
    const missing: string[] = [];
    for (const name of names) {
      const sealed = stored.get(name);
      if (sealed === undefined) {
        missing.push(name);
        continue;
      }
      let opened: Record<string, string>;
      try {
        opened = this.o.secrets.open(sealedAs(projectId, name), sealed);
      } catch (cause) {
        throw new ExpoError('STORE_FAILED', `secret ${name} of project '${projectId}' cannot be opened with this controller's key (was secret-env.key replaced?); set it again`, { cause });
      }
      const value = opened[name];
      if (value === undefined) throw new ExpoError('STORE_FAILED', `secret ${name} of project '${projectId}' is not in a known format; set it again`);
      values[name] = value;
    }
    return { values, missing };
  }
}
