/** The liveness headers: what the controller states, and what the agent accepts of them. */
import { describe, expect, it } from 'vitest';
import { livenessHeaders, parseLiveness } from '../../../src/protocol/liveness.ts';
import { agentIntervals, backstopGraceMs, heartbeatWaitMaxMs, livenessOf, pollWaitMaxMs } from '../../../src/monitor/watchdog-policy.ts';

const bounds = { workerHeartbeatS: 15, preparingKeepaliveS: 15, heartbeatIntervalS: 30, pollWaitS: 25 };

describe('liveness headers', () => {
  it('round-trip what the controller states', () => {
    const l = livenessOf(120_000, 600_000);
    expect(l).toEqual({ heartbeatTimeoutMs: 120_000, pollWaitMaxMs: 25_000, prepareTimeoutMs: 600_000 });
    expect(parseLiveness(livenessHeaders(l))).toEqual(l);
  });

  it('are absent from an older controller (or anything else answering): null, and the config stands', () => {
    expect(parseLiveness({})).toBeNull();
    expect(parseLiveness({ 'x-expo-heartbeat-timeout-ms': '6000' })).toBeNull();
    expect(parseLiveness({ 'x-expo-heartbeat-timeout-ms': 'six', 'x-expo-poll-wait-max-ms': '3000', 'x-expo-prepare-timeout-ms': '1' })).toBeNull();
    expect(parseLiveness({ 'x-expo-heartbeat-timeout-ms': '-6000', 'x-expo-poll-wait-max-ms': '3000', 'x-expo-prepare-timeout-ms': '1' })).toBeNull();
  });

  it('clamp hostile values, so the agent can neither spin nor overflow a timer (which would fire at once)', () => {
    const l = parseLiveness({ 'x-expo-heartbeat-timeout-ms': '1', 'x-expo-poll-wait-max-ms': '99999999', 'x-expo-prepare-timeout-ms': '9999999999' })!;
    expect(l).toEqual({ heartbeatTimeoutMs: 100, pollWaitMaxMs: 25_000, prepareTimeoutMs: 2 ** 31 - 1 });
    // A tiny timeout still leaves the agent a floor of 250 ms between its own messages.
    expect(agentIntervals(bounds, l)).toMatchObject({ workerHeartbeatMs: 250, preparingKeepaliveMs: 250, monitorIntervalS: 1 });
  });
});

describe('the controller caps what it holds open', () => {
  it('a long poll at half the timeout and a heartbeat wait at a quarter, both at most the API bound of 25 s', () => {
    expect(pollWaitMaxMs(6000)).toBe(3000);
    expect(heartbeatWaitMaxMs(6000)).toBe(1500);
    expect(pollWaitMaxMs(600_000)).toBe(25_000);
    // workerHeartbeatS 30 at the default 120 s would ask for 30 s: more than the API takes.
    expect(heartbeatWaitMaxMs(120_000)).toBe(25_000);
  });

  it("waits at least a minute (and a whole timeout) past a build's limit before failing it itself", () => {
    expect(backstopGraceMs(6000)).toBe(60_000);
    expect(backstopGraceMs(300_000)).toBe(300_000);
  });
});
