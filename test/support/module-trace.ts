/**
 * A preload (`node --import ./test/support/module-trace.ts`) that appends every module the process
 * loads to the file named by EXPO_TEST_MODULE_TRACE, one `<pid> <url>` line each, as it is
 * resolved. Tests read it to see which modules an agent has loaded at a given moment (the lazy
 * modules absent while it idles). Children that inherit NODE_OPTIONS write their own pid, so a
 * test keeps the agent's lines only.
 */
import { appendFileSync } from 'node:fs';
import { registerHooks } from 'node:module';

const file = process.env.EXPO_TEST_MODULE_TRACE;
if (file !== undefined && file !== '') {
  const seen = new Set<string>();
  registerHooks({
    resolve(specifier, context, next) {
      const resolved = next(specifier, context);
      if (!seen.has(resolved.url)) {
        seen.add(resolved.url);
        appendFileSync(file, `${process.pid} ${resolved.url}\n`);
      }
      return resolved;
    },
  });
}
