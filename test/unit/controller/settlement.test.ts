/** The one decision on how an attempt ends, over the table of its cases. */
import { describe, expect, it } from 'vitest';
import { settlement, type AttemptEnding, type Settlement, type SettlementInput } from '../../../src/controller/settlement.ts';

const build = (over: Partial<SettlementInput> = {}): SettlementInput => ({ status: 'running', lease: 'digest', attempt: 1, maxAttempts: 2, cancelRequested: false, ...over });
const byController = (reason: AttemptEnding['reason']): AttemptEnding => ({ by: 'controller', status: 'failed', reason });

const CASES: [name: string, input: SettlementInput, ending: AttemptEnding, expected: Settlement][] = [
  ['a queued build has no attempt to end', build({ status: 'queued', lease: null }), byController('worker_lost'), { kind: 'none' }],
  ['a final build has no attempt to end', build({ status: 'failed', lease: null }), byController('heartbeat_timeout'), { kind: 'none' }],
  ['a worker completing a build already ended', build({ status: 'succeeded', lease: null }), { by: 'worker', status: 'succeeded', reason: null }, { kind: 'none' }],

  ['silence about an unacknowledged build takes it back', build({ status: 'assigned' }), byController('heartbeat_timeout'), { kind: 'take-back' }],
  ['a lost worker\'s unacknowledged build is taken back', build({ status: 'assigned', attempt: 2, maxAttempts: 2 }), byController('worker_lost'), { kind: 'take-back' }],
  ['an unacknowledged build with a cancel pending ends cancelled', build({ status: 'assigned', cancelRequested: true }), byController('worker_lost'), { kind: 'cancel-unstarted' }],
  ['a prepare timeout of an unacknowledged build is a failure, not silence', build({ status: 'assigned' }), byController('prepare_timeout'), { kind: 'requeue', reason: 'prepare_timeout' }],
  ['an unopenable secret fails even an unacknowledged build', build({ status: 'assigned' }), byController('build_failed'), { kind: 'end', status: 'failed', reason: 'build_failed' }],
  ['the worker reporting silence on an assigned build is not a take-back', build({ status: 'assigned' }), { by: 'worker', status: 'failed', reason: 'worker_lost' }, { kind: 'requeue', reason: 'worker_lost' }],

  ['an infrastructure failure with attempts left requeues', build({ status: 'preparing' }), byController('heartbeat_timeout'), { kind: 'requeue', reason: 'heartbeat_timeout' }],
  ['a VM crash the worker reports requeues', build(), { by: 'worker', status: 'failed', reason: 'vm_crashed' }, { kind: 'requeue', reason: 'vm_crashed' }],
  ['an infrastructure failure on the last attempt fails', build({ attempt: 2 }), byController('worker_lost'), { kind: 'end', status: 'failed', reason: 'worker_lost' }],
  ['an infrastructure failure with a cancel pending ends cancelled, reason kept', build({ cancelRequested: true }), byController('heartbeat_timeout'), { kind: 'end', status: 'cancelled', reason: 'heartbeat_timeout' }],

  ['a build failure never requeues', build(), { by: 'worker', status: 'failed', reason: 'build_failed' }, { kind: 'end', status: 'failed', reason: 'build_failed' }],
  ['a timeout never requeues', build(), byController('timed_out'), { kind: 'end', status: 'failed', reason: 'timed_out' }],
  ['a missing artifact never requeues', build(), { by: 'worker', status: 'failed', reason: 'artifact_missing' }, { kind: 'end', status: 'failed', reason: 'artifact_missing' }],
  ['a success ends succeeded', build(), { by: 'worker', status: 'succeeded', reason: null }, { kind: 'end', status: 'succeeded', reason: null }],
  ['a cancel the worker carried out ends cancelled', build({ cancelRequested: true }), { by: 'worker', status: 'cancelled', reason: null }, { kind: 'end', status: 'cancelled', reason: null }],
];

describe('settlement', () => {
  it.each(CASES)('%s', (_name, input, ending, expected) => {
    expect(settlement(input, ending)).toEqual(expected);
  });
});
