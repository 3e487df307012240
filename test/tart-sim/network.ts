/**
 * `tart run`'s network (spec §2 run): tart's shared NAT, or Softnet with `--net-softnet` (or,
 * as since tart 2.24, `--net-softnet-allow` alone), which needs an executable `softnet` on the
 * PATH `tart run` gets: tart fails building the network device, before taking any lock.
 * The simulator records the network (`tart sim net NAME`) and filters nothing: every VM is a
 * loopback sshd.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Parsed } from './args.ts';
import { TartError } from './errors.ts';

/** A run's network: `softnet` with its allow list as given on the command line. */
export interface RunNetwork {
  mode: 'shared' | 'softnet';
  allow?: string[];
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** The network `args` ask for; throws tart's error when Softnet is asked for without `softnet`. */
export function runNetwork(args: Parsed, env: NodeJS.ProcessEnv): RunNetwork {
  const allow = args.options.get('net-softnet-allow');
  if (!args.flags.has('net-softnet') && allow === undefined) return { mode: 'shared' };
  const onPath = (env.PATH ?? '').split(delimiter).some((d) => d !== '' && isExecutable(join(d, 'softnet')));
  if (!onPath) throw new TartError('InitializationFailed(why: "softnet not found in PATH")', 1);
  if (allow === undefined) return { mode: 'softnet' };
  return { mode: 'softnet', allow: allow.flatMap((x) => x.split(',')).map((x) => x.trim()).filter((x) => x !== '') };
}
