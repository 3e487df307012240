import { describe, expect, it } from 'vitest';
import { assertVmName, cloneName, parseCloneName } from '../../../src/vm/vm-name.ts';

describe('clone names', () => {
  it('builds and parses <prefix>-<workerId>-<buildId>-<attempt>', () => {
    const name = cloneName({ prefix: 'expo', workerId: 'mac-mini.1', buildId: 'abcdefghijklmnop', attempt: 2 });
    expect(name).toBe('expo-mac-mini.1-abcdefghijklmnop-2');
    expect(parseCloneName(name, 'expo', 'mac-mini.1')).toEqual({ buildId: 'abcdefghijklmnop', attempt: 2 });
  });

  it("never takes another worker's clone whose id extends ours", () => {
    const theirs = cloneName({ prefix: 'expo', workerId: 'a-b', buildId: 'abcdefghijklmnop', attempt: 1 });
    expect(parseCloneName(theirs, 'expo', 'a')).toBeNull();
    expect(parseCloneName('sequoia-base', 'expo', 'a')).toBeNull();
    expect(parseCloneName('expo-a-x', 'expo', 'a')).toBeNull();
  });

  it('refuses unsafe names', () => {
    expect(() => cloneName({ prefix: 'expo', workerId: 'w', buildId: 'a/b', attempt: 1 })).toThrow(expect.objectContaining({ code: 'VM_BAD_NAME' }));
    expect(() => cloneName({ prefix: 'expo', workerId: 'w', buildId: 'a-b', attempt: 1 })).toThrow(expect.objectContaining({ code: 'VM_BAD_NAME' }));
    expect(() => cloneName({ prefix: 'ex po', workerId: 'w', buildId: 'ab', attempt: 1 })).toThrow(expect.objectContaining({ code: 'VM_BAD_NAME' }));
    expect(() => assertVmName('..')).toThrow();
    expect(() => assertVmName('ok_name-1.2')).not.toThrow();
  });
});
