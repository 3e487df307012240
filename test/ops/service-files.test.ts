/**
 * The controller's service files: the launchd plist parses (python3's plistlib) and runs the
 * controller without a usable key until one is set; the systemd unit runs the same command with
 * the key from an EnvironmentFile, never on its command line.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const root = new URL('../../', import.meta.url);

describe('controller service files', () => {
  it('launchd/com.expo-worker.controller.plist is a valid plist that runs the controller', () => {
    const json = execFileSync('python3', ['-c', 'import json,plistlib,sys; print(json.dumps(plistlib.loads(sys.stdin.buffer.read())))'], {
      input: readFileSync(new URL('launchd/com.expo-worker.controller.plist', root)),
      env: process.env,
    }).toString();
    const plist = JSON.parse(json);
    expect(plist.Label).toBe('com.expo-worker.controller');
    expect(plist.ProgramArguments.slice(2)).toEqual(['controller', '--db', '/usr/local/var/expo-worker/controller.db', '--host', '127.0.0.1', '--port', '3000']);
    expect(plist.ProgramArguments.join(' ')).not.toContain('--api-key');
    // Empty until the operator sets it: the controller refuses to start without a key.
    expect(plist.EnvironmentVariables).toEqual({ EXPO_CONTROLLER_API_KEY: '' });
    expect(plist.KeepAlive).toEqual({ SuccessfulExit: false });
    expect(plist.ExitTimeOut).toBeGreaterThanOrEqual(30);
  });

  it('systemd/expo-worker-controller.service runs the controller with its key from an EnvironmentFile', () => {
    const unit = readFileSync(new URL('systemd/expo-worker-controller.service', root), 'utf8');
    const keys = new Map<string, string>();
    let section = '';
    for (const line of unit.split('\n')) {
      if (line.startsWith('#') || line.trim() === '') continue;
      const s = /^\[(\w+)\]$/.exec(line);
      if (s) {
        section = s[1]!;
        continue;
      }
      const kv = /^(\w+)=(.*)$/.exec(line);
      expect(kv, line).not.toBeNull();
      // systemd has no trailing comments: a '#' after a value would be part of it.
      expect(kv![2], line).not.toContain('#');
      keys.set(`${section}.${kv![1]}`, kv![2]!);
    }
    expect(keys.get('Service.ExecStart')).toMatch(/cli\.js controller --db \/var\/lib\/expo-worker\/controller\.db --host 127\.0\.0\.1/);
    expect(keys.get('Service.ExecStart')).not.toContain('--api-key');
    expect(keys.get('Service.EnvironmentFile')).toBe('/etc/expo-worker/controller.env');
    expect(keys.get('Service.KillSignal')).toBe('SIGTERM');
    expect(keys.get('Service.Restart')).toBe('on-failure');
    expect(keys.get('Install.WantedBy')).toBe('multi-user.target');
  });
});
