/**
 * VmMonitor through a RemoteWorkspace over a scripted SSH session (no sshd, no VM): the exact
 * probe, settings file, launch and stop commands on the wire, which script runs, and each way a
 * start can fail.
 */
import { describe, expect, it } from 'vitest';
import { RemoteWorkspace } from '../../../src/agent/remote-workspace.ts';
import { launchCommand, loadMonitorScript, monitorEnv, parseMonitorPid, VmMonitor, type MonitorImage, type MonitorSettings } from '../../../src/monitor/vm-monitor.ts';
import { FakeSshSession } from '../../support/fake-ssh-session.ts';

const DIR = '.expo-worker/builds/b7-1';
const ABS = `"$HOME"/${DIR}`;
const IMAGE: MonitorImage = { contents: Buffer.from('#!/bin/bash\nVM_MONITOR_VERSION=2.0.0\necho beat\n'), version: '2.0.0', installedPath: '/usr/local/bin/vm-monitor.sh' };
const SETTINGS: MonitorSettings = { controllerUrls: ['http://10.0.0.1:3000'], buildId: 'b7', workerId: "mac's mini", buildToken: 'ewb_secret', intervalS: 30, requestTimeoutS: 10 };

const OPEN = (probe: string) => `mkdir -p ${ABS}/work && chmod 700 ${ABS} && ${probe}`;
const PROBE = `{ /usr/local/bin/vm-monitor.sh --version 2>/dev/null || true; }`;
const LAUNCH = (script: string) =>
  `/bin/bash ${ABS}/setup.sh && rm -f ${ABS}/setup.sh && cd "$HOME" && ` +
  `set -a && . ${DIR}/monitor.env && set +a && rm -f ${DIR}/monitor.env && ` +
  `{ nohup ${script} >${DIR}/monitor.log 2>&1 </dev/null & pid=$!; i=0; ` +
  `while kill -0 "$pid" 2>/dev/null && ! grep -q '^\\[VM Monitor\\] Starting for build' ${DIR}/monitor.log 2>/dev/null && [ $i -lt 250 ]; do sleep 0.02; i=$((i+1)); done; ` +
  `if kill -0 "$pid" 2>/dev/null; then echo "$pid"; else echo "the monitor exited at once:"; tail -n 5 ${DIR}/monitor.log; exit 3; fi; }`;

function setup(session: FakeSshSession, image: MonitorImage = IMAGE) {
  const monitor = new VmMonitor(session, image, SETTINGS);
  const ws = new RemoteWorkspace(session, { id: 'b7', attempt: 1, env: {}, steps: [{ name: 's', run: 'true' }] }, { monitor });
  const notes: string[] = [];
  return { monitor, ws, notes, note: (l: string) => notes.push(l) };
}

/** The body of one file in the setup upload. */
function uploaded(session: FakeSshSession, path: string): { body: string; mode: string } | null {
  const data = session.uploads[0]!.data;
  const tag = /<<'(EXPO_EOF_[0-9a-f]{16})'/.exec(data)![1]!;
  const m = new RegExp(`cat >"\\$HOME"/${DIR}/${path} <<'${tag}'\\n([^]*?)\\n${tag}\\nchmod (\\d+) `).exec(data);
  return m ? { body: m[1]!, mode: m[2]! } : null;
}

describe('VmMonitor', () => {
  it("runs the image's monitor when its version is the agent's: settings in a 0600 file, launched in the setup command", async () => {
    const s = new FakeSshSession().expect(OPEN(PROBE), { stdout: '2.0.0\n' }).allowUploads(1).expect(LAUNCH('/usr/local/bin/vm-monitor.sh'), { stdout: '4321\n' });
    const { monitor, ws, notes, note } = setup(s);
    expect(monitor.state).toBe('idle');
    expect(await ws.startMonitor(note)).toBe(4321);
    expect(monitor.state).toBe('running');
    expect(notes).toEqual([]);
    expect(uploaded(s, 'monitor.env')).toEqual({
      body:
        "EXPO_MONITOR_CONTROLLER=http://10.0.0.1:3000\nEXPO_MONITOR_BUILD_ID=b7\nEXPO_MONITOR_WORKER_ID='mac'\\''s mini'\nEXPO_MONITOR_TOKEN=ewb_secret\n" +
        `EXPO_MONITOR_INTERVAL_S=30\nEXPO_MONITOR_CURL_TIMEOUT_S=10\nEXPO_MONITOR_PROGRESS_FILE=${DIR}/progress`,
      mode: '600',
    });
    expect(uploaded(s, 'vm-monitor.sh')).toBeNull();
    // The build token travels in the file only, never on a command line.
    for (const c of s.commands) expect(c.command).not.toContain('ewb_secret');
    s.assertDone();
  });

  it('hands the monitor every controller of the list, space-separated', () => {
    expect(monitorEnv({ ...SETTINGS, controllerUrls: ['http://10.0.0.1:3000', 'http://10.0.0.2:3000'] }, DIR).EXPO_MONITOR_CONTROLLER).toBe('http://10.0.0.1:3000 http://10.0.0.2:3000');
  });

  it.each([
    ['another version', '1.0.0\n', '1.0.0'],
    ['none (missing or broken)', '', 'missing'],
  ])("uploads and runs the agent's own monitor when the image has %s, and says so", async (_what, probeOut, said) => {
    const s = new FakeSshSession()
      .expect(OPEN(PROBE), { stdout: probeOut })
      .allowUploads(1)
      .expect(LAUNCH(`"$HOME"/${DIR}/vm-monitor.sh`), { stdout: '99\n' });
    const { ws, notes, note } = setup(s);
    expect(await ws.startMonitor(note)).toBe(99);
    expect(notes).toEqual([`vm-monitor.sh in the image is ${said}; using the agent's 2.0.0`]);
    expect(uploaded(s, 'vm-monitor.sh')).toEqual({ body: IMAGE.contents.toString().trimEnd(), mode: '700' });
  });

  it('quotes an installed path that needs it, in the probe and the launch', async () => {
    const image = { ...IMAGE, installedPath: "/opt/o'brien tools/vm-monitor.sh" };
    const quoted = `'/opt/o'\\''brien tools/vm-monitor.sh'`;
    const s = new FakeSshSession()
      .expect(OPEN(`{ ${quoted} --version 2>/dev/null || true; }`), { stdout: '2.0.0' })
      .allowUploads(1)
      .expect(LAUNCH(quoted), { stdout: '5\n' });
    const { ws, note } = setup(s, image);
    expect(await ws.startMonitor(note)).toBe(5);
    s.assertDone();
  });

  it('fails when the monitor exited at once (the launch exits 3 with its log tail); stopping it then sends nothing', async () => {
    const s = new FakeSshSession()
      .expect(OPEN(PROBE), { stdout: '2.0.0' })
      .allowUploads(1)
      .expect(() => true, { exitCode: 3, stdout: 'the monitor exited at once:\ncurl: command not found\n' });
    const { monitor, ws, note } = setup(s);
    await expect(ws.startMonitor(note)).rejects.toThrow(/exited 3: the monitor exited at once:\ncurl: command not found/);
    expect(monitor.state).toBe('probed');
    await ws.stopMonitor();
    expect(s.commands).toHaveLength(2);
  });

  it('fails when the launch printed no pid', async () => {
    const s = new FakeSshSession().expect(OPEN(PROBE), { stdout: '2.0.0' }).allowUploads(1).expect(() => true, { stdout: 'hello\n' });
    const { ws, note } = setup(s);
    await expect(ws.startMonitor(note)).rejects.toThrow("the monitor did not start (got 'hello')");
  });

  it('fails when the workspace cannot be created, before any upload', async () => {
    const s = new FakeSshSession().expect(OPEN(PROBE), { exitCode: 1, stderr: 'No space left on device' });
    const { monitor, ws, note } = setup(s);
    await expect(ws.startMonitor(note)).rejects.toThrow(/No space left on device/);
    expect(monitor.state).toBe('idle');
    expect(s.uploads).toEqual([]);
  });

  it('stops a running monitor once: TERM to its pid, 5 s at most, success even when it is gone', async () => {
    const s = new FakeSshSession()
      .expect(OPEN(PROBE), { stdout: '2.0.0' })
      .allowUploads(1)
      .expect(() => true, { stdout: '4321\n' })
      .expect('kill -TERM 4321 2>/dev/null; exit 0');
    const { monitor, ws, note } = setup(s);
    await ws.startMonitor(note);
    await ws.stopMonitor();
    expect(s.commands[2]!.options).toEqual({ timeoutMs: 5000 });
    expect(monitor.state).toBe('stopped');
    await ws.stopMonitor(); // nothing more on the wire (the fake would refuse it)
    s.assertDone();
  });

  it('refuses a second start', async () => {
    const s = new FakeSshSession().expect(OPEN(PROBE), { stdout: '2.0.0' }).allowUploads(1).expect(() => true, { stdout: '1\n' });
    const { ws, note } = setup(s);
    await ws.startMonitor(note);
    await expect(ws.startMonitor(note)).rejects.toThrow(/already started/);
  });

  it.each(['0', '-3', '12abc', '', '1.5'])('parseMonitorPid refuses %j', (out) => {
    expect(() => parseMonitorPid(out)).toThrow(/did not start/);
  });

  it('launchCommand puts only the monitor in the background, fds off the channel', () => {
    expect(launchCommand('d', 's')).toContain('{ nohup s >d/monitor.log 2>&1 </dev/null & pid=$!;');
  });

  it('loads the shipped vm-image/vm-monitor.sh and its VM_MONITOR_VERSION', () => {
    const { contents, version } = loadMonitorScript();
    expect(version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(contents.toString()).toContain(`VM_MONITOR_VERSION=${version}`);
  });
});
