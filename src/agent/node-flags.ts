/**
 * The Node.js flags the agent runs under, wherever it is launched: the LaunchDaemon's
 * `ProgramArguments` (launchd/com.expo-worker.agent.plist), `bin/expo-worker agent`, and the test
 * farm that the benchmarks measure the agent in. A test holds the plist and the script to this
 * list. V8 sizes its heap when the process starts, so these cannot be set from inside the agent
 * (`v8.setFlagsFromString` comes too late).
 *
 * `--max-semi-space-size=1`: a young generation of 1 MB semi-spaces instead of growing to V8's
 * default 8 MB. The idle agent's allocations (a poll, a heartbeat) are short-lived and small, so
 * scavenges stay cheap, while with the default the idle agent's RSS crept from 79.5 to a plateau
 * of 83.0 MB within 90 s, past the 80 MB goal; with the flag, 77.4 to 79.6 MB
 * (docs/benchmarks.md, Agent: idle memory, which also gives its cost on a log-heavy build).
 */
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];
