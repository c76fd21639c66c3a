/**
 * What travels on the queues. Every operator instance is one FIFO message group
 * (MessageGroupId = instance id), so its input is processed strictly in order.
 */

/** `${vertexId}#${index}` */
export type InstanceId = string;

export function instanceId(vertexId: string, index: number): InstanceId {
  return `${vertexId}#${index}`;
}

export function parseInstanceId(id: InstanceId): { vertexId: string; index: number } {
  const at = id.lastIndexOf('#');
  return { vertexId: id.slice(0, at), index: Number(id.slice(at + 1)) };
}

/** One record on a channel. */
export interface RecordEnvelope {
  /** Key string (set after keyBy). */
  readonly k?: string;
  readonly v: unknown;
  /** Event time, ms. */
  readonly t?: number;
  /** Origin: `${partition}:${offset}` plus `.${n}` per flatMap fan-out; deterministic across replays. */
  readonly o: string;
}

/** Records, a watermark update, or a barrier on channel from -> to. */
export interface ChannelMessage {
  readonly type: 'data' | 'barrier';
  readonly gen: number;
  readonly from: InstanceId;
  readonly to: InstanceId;
  /** Channel sequence number: 1, 2, 3, ... per (generation, from, to). */
  readonly seq: number;
  readonly records?: readonly RecordEnvelope[];
  /** Sender's watermark after this message. */
  readonly wm?: number;
  readonly checkpointId?: number;
  /** Barrier of the final checkpoint (trigger 'final'): aligned everywhere (protocol/alignment.ts). */
  readonly final?: true;
}

/** Coordinator and runtime -> instance. Not sequenced; each kind is idempotent. */
export type ControlMessage =
  | { readonly type: 'poll'; readonly gen: number; readonly to: InstanceId }
  | { readonly type: 'inject-barrier'; readonly gen: number; readonly to: InstanceId; readonly checkpointId: number; readonly final?: true }
  | { readonly type: 'tick'; readonly gen: number; readonly to: InstanceId };

export type InstanceMessage = ChannelMessage | ControlMessage;

export function isChannelMessage(message: InstanceMessage): message is ChannelMessage {
  return message.type === 'data' || message.type === 'barrier';
}

export function channelKey(from: InstanceId, to: InstanceId): string {
  return `${from}>${to}`;
}

/** Deterministic SQS FIFO deduplication id for a channel message. */
export function dedupIdOf(message: InstanceMessage): string {
  if (isChannelMessage(message)) return `g${message.gen}:${message.from}>${message.to}:${message.seq}`;
  if (message.type === 'inject-barrier') return `g${message.gen}:barrier:${message.checkpointId}:${message.to}`;
  return `g${message.gen}:${message.type}:${message.to}:${Date.now()}:${Math.random()}`;
}

export const WATERMARK_MIN = -Number.MAX_SAFE_INTEGER;
export const WATERMARK_MAX = Number.MAX_SAFE_INTEGER;
