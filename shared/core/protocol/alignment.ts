import type { CheckpointConfig } from '../config.js';
import type { ChannelMessage, InstanceId } from '../messages.js';
import type { AlignmentState } from '../ports.js';

/**
 * Barrier alignment as pure decisions, one message at a time (Flink's
 * SingleCheckpointBarrierHandler, reduced to what a serial instance needs).
 *
 * - aligned (exactly-once): after barrier N on a channel, that channel's messages are held
 *   until every input delivered barrier N; then snapshot, forward, release the held ones.
 * - unaligned: snapshot at the first barrier N and forward it at once; records still arriving
 *   on channels that have not delivered barrier N are in-flight data of checkpoint N and are
 *   recorded as its channel state (and processed as usual).
 * - aligned-with-timeout: aligned until `alignmentTimeoutMs` passed since the first barrier,
 *   then switch to unaligned.
 * - at-least-once: nothing is held; snapshot when the last barrier arrives.
 *
 * The final checkpoint of a bounded run (its barriers carry `final`) is always aligned: an
 * unaligned one would leave the in-flight records' output in the epoch after it, which no
 * checkpoint ever commits. Aligned, every record precedes the final barrier on every channel
 * (the sources have read their input to the end), so the final epoch holds all output.
 */

export type AlignmentEffect =
  | { readonly kind: 'process'; readonly message: ChannelMessage; readonly recordAsChannelState: boolean }
  | { readonly kind: 'hold'; readonly message: ChannelMessage }
  | { readonly kind: 'snapshot'; readonly checkpointId: number; readonly unaligned: boolean; readonly alignmentMs: number; readonly final: boolean }
  | { readonly kind: 'ack'; readonly checkpointId: number; readonly alignmentMs: number; readonly unaligned: boolean }
  /** Held messages go back to the front of the input, in their original order. */
  | { readonly kind: 'release'; readonly messages: readonly ChannelMessage[] }
  | { readonly kind: 'drop-stale-barrier'; readonly checkpointId: number };

export interface AlignmentDecision {
  readonly alignment: AlignmentState | undefined;
  readonly effects: readonly AlignmentEffect[];
}

export interface AlignmentContext {
  readonly inputs: readonly InstanceId[];
  readonly config: Pick<CheckpointConfig, 'mode' | 'alignment' | 'alignmentTimeoutMs'>;
  readonly now: number;
}

export function onChannelMessage(alignment: AlignmentState | undefined, message: ChannelMessage, ctx: AlignmentContext): AlignmentDecision {
  if (message.type === 'data') return onData(alignment, message, ctx);
  return onBarrier(alignment, message, ctx);
}

function onData(alignment: AlignmentState | undefined, message: ChannelMessage, ctx: AlignmentContext): AlignmentDecision {
  if (!alignment) return { alignment, effects: [{ kind: 'process', message, recordAsChannelState: false }] };
  const barriered = alignment.barriered.includes(message.from);
  // Behind a held barrier of the next checkpoint, data of its channel waits too (any mode).
  const behindHeldBarrier = alignment.held.some((h) => h.type === 'barrier' && h.from === message.from);
  if (behindHeldBarrier || (alignment.phase === 'aligning' && barriered && ctx.config.mode === 'exactly-once')) {
    return { alignment: { ...alignment, held: [...alignment.held, message] }, effects: [{ kind: 'hold', message }] };
  }
  const inFlight = alignment.phase === 'unaligned' && !barriered;
  return { alignment, effects: [{ kind: 'process', message, recordAsChannelState: inFlight }] };
}

function onBarrier(alignment: AlignmentState | undefined, message: ChannelMessage, ctx: AlignmentContext): AlignmentDecision {
  const id = message.checkpointId ?? 0;
  if (alignment && id > alignment.checkpointId && alignment.barriered.includes(message.from)) {
    // The next checkpoint's barrier on a channel that already delivered this one (concurrent
    // checkpoints): it waits, in order, until this alignment completes.
    return { alignment: { ...alignment, held: [...alignment.held, message] }, effects: [{ kind: 'hold', message }] };
  }
  if (alignment && id < alignment.checkpointId) {
    return { alignment, effects: [{ kind: 'drop-stale-barrier', checkpointId: id }] };
  }
  if (alignment && id > alignment.checkpointId) {
    // A newer barrier overtook an unfinished alignment (its checkpoint was given up
    // upstream): release what was held and start over with the newer one, as Flink does.
    const released: AlignmentEffect[] = alignment.held.length > 0 ? [{ kind: 'release', messages: alignment.held }] : [];
    const next = onBarrier(undefined, message, ctx);
    return { alignment: next.alignment, effects: [...released, ...next.effects] };
  }
  if (!alignment) return firstBarrier(id, message.from, message.final === true, ctx);
  if (alignment.barriered.includes(message.from)) {
    return { alignment, effects: [{ kind: 'drop-stale-barrier', checkpointId: id }] };
  }
  const barriered = [...alignment.barriered, message.from];
  const alignmentMs = ctx.now - alignment.startedAt;
  if (barriered.length < ctx.inputs.length) {
    return { alignment: { ...alignment, barriered }, effects: [] };
  }
  // Last barrier: the checkpoint is complete at this instance.
  if (alignment.phase === 'unaligned') {
    const effects: AlignmentEffect[] = [{ kind: 'ack', checkpointId: id, alignmentMs, unaligned: true }];
    if (alignment.held.length > 0) effects.push({ kind: 'release', messages: alignment.held });
    return { alignment: undefined, effects };
  }
  const effects: AlignmentEffect[] = [
    { kind: 'snapshot', checkpointId: id, unaligned: false, alignmentMs, final: alignment.final === true },
    { kind: 'ack', checkpointId: id, alignmentMs, unaligned: false },
  ];
  if (alignment.held.length > 0) effects.push({ kind: 'release', messages: alignment.held });
  return { alignment: undefined, effects };
}

function firstBarrier(id: number, from: InstanceId, final: boolean, ctx: AlignmentContext): AlignmentDecision {
  if (ctx.inputs.length <= 1) {
    return {
      alignment: undefined,
      effects: [
        { kind: 'snapshot', checkpointId: id, unaligned: false, alignmentMs: 0, final },
        { kind: 'ack', checkpointId: id, alignmentMs: 0, unaligned: false },
      ],
    };
  }
  const startsUnaligned =
    !final && ctx.config.mode === 'exactly-once' && (ctx.config.alignment === 'unaligned' || (ctx.config.alignment === 'aligned-with-timeout' && ctx.config.alignmentTimeoutMs === 0));
  if (startsUnaligned) {
    return {
      alignment: { checkpointId: id, startedAt: ctx.now, barriered: [from], phase: 'unaligned', held: [] },
      effects: [{ kind: 'snapshot', checkpointId: id, unaligned: true, alignmentMs: 0, final: false }],
    };
  }
  return { alignment: { checkpointId: id, startedAt: ctx.now, barriered: [from], phase: 'aligning', held: [], ...(final ? { final } : {}) }, effects: [] };
}

/** Called on every step and tick: switches a long alignment to unaligned (never the final checkpoint's). */
export function onTimePassing(alignment: AlignmentState | undefined, ctx: AlignmentContext): AlignmentDecision {
  if (!alignment || alignment.phase !== 'aligning' || alignment.final || ctx.config.alignment !== 'aligned-with-timeout' || ctx.now - alignment.startedAt < ctx.config.alignmentTimeoutMs) {
    return { alignment, effects: [] };
  }
  const alignmentMs = ctx.now - alignment.startedAt;
  const effects: AlignmentEffect[] = [{ kind: 'snapshot', checkpointId: alignment.checkpointId, unaligned: true, alignmentMs, final: false }];
  // Held messages came from channels that already delivered the barrier: they belong to
  // the next epoch, so they are processed now, not recorded as channel state.
  if (alignment.held.length > 0) effects.push({ kind: 'release', messages: alignment.held });
  return { alignment: { ...alignment, phase: 'unaligned', held: [] }, effects };
}
