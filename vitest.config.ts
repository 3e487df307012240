import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Defaults for tests that set none; e2e files set their own, derived from their farm timings.
    // Unit tests take milliseconds; the integration tests drive real sshd and tart-simulator VMs,
    // where every tart call is a fresh Node process. On 2 busy cores (other suites beside ours,
    // load average 8–10) the slowest non-e2e tests took 20 s to over 30 s (tart-sim guest/cli,
    // integration/ephemeral-vm, integration/doctor), and the old 30 s timed some of them out.
    // 90 s is over twice that, so a slow test fails on its own assertion, which says what was
    // slow, rather than on a bare timeout. Files that run whole VM cycles per test (doctor, e2e)
    // set more for themselves.
    testTimeout: 90_000,
    // Hooks start and stop the same real processes (tart simulators with their VMs, sshd,
    // controllers) for a whole file or before/after every test, and a stop may wait out its own
    // kill timers (tart stop's SIGKILL, an agent's drain) before it returns. A timed-out
    // beforeAll fails every test of its file and a timed-out afterEach leaks its processes into
    // the next test, so hooks get more room than a test.
    hookTimeout: 120_000,
    // Integration tests start real processes (sshd, the controller); two cores, so keep it modest.
    maxWorkers: 2,
    // Gives the run an id that every test process inherits, and fails the run if any survives it.
    globalSetup: ['test/support/global-setup.ts'],
    // Per file: fails the file that leaves a process or a mkdtemp dir behind (test/support/leak-check.ts).
    setupFiles: ['test/support/leak-check.ts'],
  },
});
