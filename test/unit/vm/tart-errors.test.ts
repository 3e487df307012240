import { describe, expect, it } from 'vitest';
import { ExpoError } from '../../../src/protocol/errors.ts';
import { classifyTartOutput, runExitError, tartError } from '../../../src/vm/tart-errors.ts';

// Every failure message of docs/tart.md §1–2 with its exit code.
const CASES: [string, number, string, string][] = [
  ['get/ip/stop/delete on a missing VM', 2, 'the specified VM "vm1" does not exist', 'VM_NOT_FOUND'],
  ['run on a missing VM', 1, 'Error: the specified VM "vm1" does not exist', 'VM_NOT_FOUND'],
  ['run twice', 2, 'VM "vm1" is already running!', 'VM_ALREADY_RUNNING'],
  ['stop a stopped VM', 2, 'VM "vm1" is not running', 'VM_NOT_RUNNING'],
  ['suspend a stopped VM', 2, 'VM "VM "vm1" is not running" is not running', 'VM_NOT_RUNNING'],
  ['delete a running VM', 1, 'VM "vm1" is running', 'VM_IS_RUNNING'],
  ['ip without lease', 1, 'no IP address found, is your VM running?', 'VM_NO_IP'],
  ['ip, agent resolver', 1, 'no IP address found (also make sure that Guest agent for Tart is running inside of a VM)', 'VM_NO_IP'],
  ['ip, plain', 1, 'no IP address found', 'VM_NO_IP'],
  ['3rd macOS VM', 1, 'The number of VMs exceeds the system limit (other running VMs: a, b)', 'VM_LIMIT'],
  ['3rd macOS VM, no list', 1, 'The number of VMs exceeds the system limit', 'VM_LIMIT'],
  ['incomplete VM dir', 1, 'VM is missing some of its files (config.json, disk.img or nvram.bin)', 'VM_UNKNOWN'],
  ['usage error', 64, "Error: Unknown option '--bogus'\nUsage: tart list [--source <source>]\n  See 'tart list --help' for more information.", 'VM_UNKNOWN'],
  ['stop SIGKILL failure', 1, 'failed to forcefully terminate the VM "vm1": 1', 'VM_UNKNOWN'],
  ['set below minimum', 1, 'Error: LessThanMinimalResourcesError: VM should have 4 CPU cores at minimum (requested 2)', 'VM_UNKNOWN'],
  ['headless start failure', 1, 'Error: The virtual machine failed to start.', 'VM_UNKNOWN'],
];

function execFailed(exitCode: number, stderr: string): ExpoError {
  return new ExpoError('EXEC_FAILED', 'x', { details: { argv: ['tart'], exitCode, signal: null, stderrTail: `${stderr}\n`, stdoutTail: '' } });
}

describe('tart error classification', () => {
  it.each(CASES)('%s → %s', (_what, exit, stderr, code) => {
    expect(classifyTartOutput(exit, stderr)).toBe(code);
    const err = tartError(execFailed(exit, stderr), ['/bin/tart', 'x', 'vm1']) as ExpoError;
    expect(err.code).toBe(code);
    expect(err.details).toMatchObject({ argv: ['/bin/tart', 'x', 'vm1'], exitCode: exit });
    expect(err.message).toContain(`exit ${exit}`);
  });

  it('names the real reason, not the usage lines', () => {
    const err = tartError(execFailed(64, "Error: Unknown option '--bogus'\nUsage: tart list\n  See 'tart list --help' for more information."), ['tart', 'list']) as ExpoError;
    expect(err.message).toContain("Unknown option '--bogus'");
  });

  it('maps a hung call to VM_TIMEOUT and a missing binary to VM_TART_NOT_FOUND', () => {
    const hung = new ExpoError('EXEC_TIMEOUT', 'x', { details: { argv: ['tart'], exitCode: null, signal: 'SIGTERM', stderrTail: '', stdoutTail: '', timeoutMs: 500 } });
    expect((tartError(hung, ['tart', 'ip', 'vm1']) as ExpoError).code).toBe('VM_TIMEOUT');
    const missing = new ExpoError('EXEC_SPAWN', 'x', { details: { argv: ['tart'], exitCode: null, signal: null, stderrTail: '', stdoutTail: '', errno: 'ENOENT' } });
    expect((tartError(missing, ['tart', 'list']) as ExpoError).code).toBe('VM_TART_NOT_FOUND');
  });

  it('classifies run exits from the log', () => {
    expect(runExitError('vm1', ['tart', 'run', 'vm1'], 0, null, 'guest has stopped the virtual machine')).toBeNull();
    expect(runExitError('vm1', [], 1, null, 'The number of VMs exceeds the system limit (other running VMs: a, b)\n')?.code).toBe('VM_LIMIT');
    expect(runExitError('vm1', [], 1, null, 'Error: the specified VM "vm1" does not exist\n')?.code).toBe('VM_NOT_FOUND');
    expect(runExitError('vm1', [], 2, null, 'VM "vm1" is already running!\n')?.code).toBe('VM_ALREADY_RUNNING');
    expect(runExitError('vm1', [], null, 'SIGKILL', '')?.code).toBe('VM_EXITED');
    expect(runExitError('vm1', [], 1, null, 'Softnet failed: boom\n')?.message).toContain('Softnet failed: boom');
  });
});
