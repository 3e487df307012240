/**
 * Signal ownership for the composition roots. Some libraries hook process signals at import
 * time: `conf` → `atomically` → `when-exit` adds `process.once` listeners for SIGTERM, SIGINT,
 * SIGHUP… that run its callbacks and then send the same signal to the process again — so one
 * SIGTERM from launchd would reach our handler twice and read as "stop now" instead of "drain".
 * A composition root calls this before installing its own handlers; nothing else may.
 */
export function takeOverSignals(signals: readonly NodeJS.Signals[]): void {
  for (const s of signals) process.removeAllListeners(s);
}
