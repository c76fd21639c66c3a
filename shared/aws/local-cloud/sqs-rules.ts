import { createHash, randomUUID } from 'node:crypto';
import { jsonResponse, parseJson, withJsonBody, type AwsRuleCounts, type EdgeResponse, type Forward, type ResolvedAwsRules } from './aws-rules.js';

/**
 * SQS's rules that ElasticMQ does not play, applied at the edge (JSON protocol only; query
 * protocol requests pass unchanged).
 *
 * Body characters. SQS accepts only #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
 * #x10000-#x10FFFF in a body and in String message attributes. SendMessage with another one
 * fails with InvalidMessageContents ("Invalid binary character '#xFFFF' was found in the
 * message body, ..."); in SendMessageBatch that entry fails (Failed, SenderFault) and the
 * others are sent. ElasticMQ takes U+FFFF for the end of its JSON input (a malformed-request
 * error) and names the others InvalidAttributeValue.
 *
 * PurgeQueue. AWS: "the message deletion process takes up to 60 seconds"; messages sent in
 * that time may be deleted, and another PurgeQueue of the queue within 60 s fails with
 * PurgeQueueInProgress. Played at its worst: for `purgeWindowMs` after a purge every message
 * sent to the queue is accepted (a MessageId, the body's MD5) and deleted (never forwarded),
 * and a second purge is refused.
 */

type Input = Record<string, unknown>;

const INVALID_CHARACTER = /[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]/u;

/** The first character SQS refuses in `text`, or undefined. A lone surrogate is refused. */
export function invalidSqsCharacter(text: string): string | undefined {
  return INVALID_CHARACTER.exec(text)?.[0];
}

function hexOf(char: string): string {
  return `#x${(char.codePointAt(0) ?? 0).toString(16).toUpperCase()}`;
}

function invalidMessage(char: string, where: string): string {
  return `Invalid binary character '${hexOf(char)}' was found in the ${where}, the set of allowed characters is #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`;
}

interface Entry {
  readonly Id?: string;
  readonly MessageBody?: string;
  readonly MessageAttributes?: Record<string, { StringValue?: string }>;
  readonly MessageGroupId?: string;
}

/** Why SQS refuses a message, or undefined. */
function refusal(entry: Entry): string | undefined {
  const body = invalidSqsCharacter(entry.MessageBody ?? '');
  if (body !== undefined) return invalidMessage(body, 'message body');
  for (const [name, value] of Object.entries(entry.MessageAttributes ?? {})) {
    const char = invalidSqsCharacter(value.StringValue ?? '');
    if (char !== undefined) return invalidMessage(char, `message attribute '${name}'`);
  }
  return undefined;
}

function sqsError(code: string, message: string): EdgeResponse {
  return jsonResponse(400, { __type: `com.amazonaws.sqs#${code}`, message }, { 'x-amzn-query-error': `${code};Sender` });
}

function queueName(url: unknown): string {
  return typeof url === 'string' ? (url.split('/').pop() ?? url) : '';
}

export class SqsRules {
  /** queue name -> end of the purge in progress (ms since epoch). */
  private readonly purging = new Map<string, number>();
  private sequence = 0;

  constructor(
    private readonly rules: ResolvedAwsRules,
    private readonly counts: AwsRuleCounts,
  ) {}

  async handle(op: string, text: string, forward: Forward): Promise<EdgeResponse> {
    if (op !== 'SendMessage' && op !== 'SendMessageBatch' && op !== 'PurgeQueue') return forward(text);
    let input: Input;
    try {
      input = JSON.parse(text) as Input;
    } catch {
      return forward(text);
    }
    const queue = queueName(input.QueueUrl);
    const purgeEnds = this.purging.get(queue);
    const inPurge = purgeEnds !== undefined && Date.now() < purgeEnds;
    if (purgeEnds !== undefined && !inPurge) this.purging.delete(queue);

    if (op === 'PurgeQueue') {
      if (inPurge) {
        this.counts.purgesRefused++;
        return sqsError('PurgeQueueInProgress', `Only one PurgeQueue operation on ${queue} is allowed every 60 seconds.`);
      }
      const response = await forward(text);
      if (response.status === 200 && this.rules.purgeWindowMs > 0) this.purging.set(queue, Date.now() + this.rules.purgeWindowMs);
      return response;
    }

    if (op === 'SendMessage') {
      const why = this.rules.sqsBodyCharacters ? refusal(input) : undefined;
      if (why !== undefined) {
        this.counts.invalidBodies++;
        return sqsError('InvalidMessageContents', why);
      }
      if (inPurge) {
        this.counts.purgedMessages++;
        return jsonResponse(200, this.accepted(input, queue));
      }
      return forward(text);
    }

    // SendMessageBatch
    const entries = (input.Entries ?? []) as Entry[];
    const failed: Array<{ Id: string | undefined; SenderFault: true; Code: string; Message: string }> = [];
    const valid: Entry[] = [];
    for (const entry of entries) {
      const why = this.rules.sqsBodyCharacters ? refusal(entry) : undefined;
      if (why === undefined) valid.push(entry);
      else failed.push({ Id: entry.Id, SenderFault: true, Code: 'InvalidMessageContents', Message: why });
    }
    this.counts.invalidBodies += failed.length;
    if (inPurge || valid.length === 0) {
      this.counts.purgedMessages += inPurge ? valid.length : 0;
      return jsonResponse(200, { Successful: valid.map((e) => ({ Id: e.Id, ...this.accepted(e, queue) })), Failed: failed });
    }
    if (failed.length === 0) return forward(text);
    const response = await forward(JSON.stringify({ ...input, Entries: valid }));
    if (response.status !== 200) return response;
    const output = parseJson(response);
    return withJsonBody(response, { ...output, Failed: [...((output.Failed ?? []) as unknown[]), ...failed] });
  }

  /** The answer to a message the purge in progress deletes. */
  private accepted(entry: Entry, queue: string): Record<string, string> {
    return {
      MessageId: randomUUID(),
      MD5OfMessageBody: createHash('md5')
        .update(entry.MessageBody ?? '', 'utf8')
        .digest('hex'),
      ...(queue.endsWith('.fifo') ? { SequenceNumber: `${Date.now()}${String(++this.sequence).padStart(7, '0')}` } : {}),
    };
  }
}
