/**
 * The rules of AWS that the emulators do not play, played by the local cloud's edge
 * (edge-router.ts) on the requests it forwards (AWS JSON protocol: `X-Amz-Target`):
 *
 * - DynamoDB transaction conflicts (dynamo-rules.ts): DynamoDB Local serializes transactions
 *   and never cancels one for a conflict; AWS cancels a transaction touching an item that an
 *   ongoing transaction writes.
 * - DynamoDB per-partition-key throughput (dynamo-rules.ts): a token bucket per (table,
 *   partition key value), charged with the units AWS bills (dynamo-billing.ts).
 * - SQS PurgeQueue (sqs-rules.ts): AWS takes up to 60 s and may delete messages sent
 *   meanwhile; ElasticMQ purges at once.
 * - SQS body characters (sqs-rules.ts): AWS answers InvalidMessageContents; ElasticMQ rejects
 *   U+FFFF as a malformed request and names other characters' errors differently.
 * - Step Functions' history limit (sfn-rules.ts): AWS fails a Standard execution at 25,000
 *   history events; moto's interpreter runs on.
 *
 * Every rule is on by default, with AWS's figures; `LocalCloudOptions.rules` and the
 * environment (awsRulesFromEnv) change them.
 */

export interface AwsRulesOptions {
  /** Cancel transactions that touch an item an ongoing transaction writes. Default true. */
  readonly transactionConflicts?: boolean;
  /** Write units per second one partition key value sustains (AWS: 1,000). 0 = unlimited. */
  readonly partitionWriteUnitsPerSecond?: number;
  /** Read units per second one partition key value sustains (AWS: 3,000). 0 = unlimited. */
  readonly partitionReadUnitsPerSecond?: number;
  /** How long after a PurgeQueue the messages sent to the queue are deleted (AWS: up to 60 s). 0 = off. */
  readonly purgeWindowMs?: number;
  /** Reject SQS bodies and string attributes with characters outside SQS's set. Default true. */
  readonly sqsBodyCharacters?: boolean;
  /** History events at which a Standard execution fails (AWS: 25,000). 0 = unlimited. */
  readonly sfnHistoryEvents?: number;
}

export type ResolvedAwsRules = Required<AwsRulesOptions>;

export const AWS_RULE_DEFAULTS: ResolvedAwsRules = {
  transactionConflicts: true,
  partitionWriteUnitsPerSecond: 1_000,
  partitionReadUnitsPerSecond: 3_000,
  purgeWindowMs: 60_000,
  sqsBodyCharacters: true,
  sfnHistoryEvents: 25_000,
};

/** The environment variable of each option (the local cloud reads them at start). */
export const AWS_RULE_ENV = {
  transactionConflicts: 'CAIRN_CLOUD_TRANSACTION_CONFLICTS',
  partitionWriteUnitsPerSecond: 'CAIRN_CLOUD_PARTITION_WCU',
  partitionReadUnitsPerSecond: 'CAIRN_CLOUD_PARTITION_RCU',
  purgeWindowMs: 'CAIRN_CLOUD_PURGE_WINDOW_MS',
  sqsBodyCharacters: 'CAIRN_CLOUD_SQS_BODY_RULES',
  sfnHistoryEvents: 'CAIRN_CLOUD_SFN_HISTORY_EVENTS',
} as const satisfies Record<keyof AwsRulesOptions, string>;

/** An environment variable of the rules holds something else than its type. */
export class InvalidAwsRuleSettingError extends Error {
  override readonly name = 'InvalidAwsRuleSettingError';
  constructor(
    readonly variable: string,
    readonly value: string,
  ) {
    super(`${variable}=${value}: expected ${variable.endsWith('_RULES') || variable.endsWith('_CONFLICTS') ? '0 or 1' : 'a number >= 0'}`);
  }
}

/** The options set in `env` (unset variables are left out). */
export function awsRulesFromEnv(env: NodeJS.ProcessEnv = process.env): AwsRulesOptions {
  const out: Record<string, boolean | number> = {};
  for (const [option, variable] of Object.entries(AWS_RULE_ENV) as Array<[keyof AwsRulesOptions, string]>) {
    const raw = env[variable];
    if (raw === undefined || raw === '') continue;
    if (typeof AWS_RULE_DEFAULTS[option] === 'boolean') {
      if (raw !== '0' && raw !== '1' && raw !== 'true' && raw !== 'false') throw new InvalidAwsRuleSettingError(variable, raw);
      out[option] = raw === '1' || raw === 'true';
    } else {
      const n = Number(raw);
      if (!Number.isFinite(n) || n < 0) throw new InvalidAwsRuleSettingError(variable, raw);
      out[option] = n;
    }
  }
  return out;
}

export function resolveAwsRules(...layers: ReadonlyArray<AwsRulesOptions | undefined>): ResolvedAwsRules {
  return Object.assign({}, AWS_RULE_DEFAULTS, ...layers.map((l) => Object.fromEntries(Object.entries(l ?? {}).filter(([, v]) => v !== undefined)))) as ResolvedAwsRules;
}

/** How often each rule bit since the edge started (also in the edge's health answer). */
export interface AwsRuleCounts {
  /** Transactions cancelled (and single writes refused) for a conflict with an ongoing transaction. */
  transactionConflicts: number;
  /** Requests (or batch entries) refused because a partition key ran out of write units. */
  throttledWrites: number;
  /** ... out of read units. */
  throttledReads: number;
  /** Messages accepted and then deleted by a purge in progress. */
  purgedMessages: number;
  /** PurgeQueue calls refused (PurgeQueueInProgress). */
  purgesRefused: number;
  /** Messages (single or batch entries) refused for their characters. */
  invalidBodies: number;
  /** Step Functions executions failed for reaching the history limit. */
  historyLimitFailures: number;
}

export const noRuleCounts = (): AwsRuleCounts => ({ transactionConflicts: 0, throttledWrites: 0, throttledReads: 0, purgedMessages: 0, purgesRefused: 0, invalidBodies: 0, historyLimitFailures: 0 });

/** A response as the edge sends it back. */
export interface EdgeResponse {
  readonly status: number;
  /** Name, value, name, value... (as node's rawHeaders). */
  readonly rawHeaders: readonly string[];
  readonly body: Buffer;
}

/** Sends a (possibly rewritten) request body to the emulator and buffers its answer. */
export type Forward = (body: string, target?: string) => Promise<EdgeResponse>;

/** A JSON-protocol answer made by the edge itself. */
export function jsonResponse(status: number, body: unknown, headers: Record<string, string> = {}): EdgeResponse {
  const text = Buffer.from(JSON.stringify(body));
  const raw = ['Content-Type', 'application/x-amz-json-1.0', 'Content-Length', String(text.byteLength), 'x-amzn-RequestId', requestId(), ...Object.entries(headers).flat()];
  return { status, rawHeaders: raw, body: text };
}

/** The emulator's answer with another JSON body (length and checksum headers dropped and set again). */
export function withJsonBody(response: EdgeResponse, body: unknown): EdgeResponse {
  const text = Buffer.from(JSON.stringify(body));
  const raw: string[] = [];
  for (let i = 0; i + 1 < response.rawHeaders.length; i += 2) {
    const name = (response.rawHeaders[i] as string).toLowerCase();
    if (name !== 'content-length' && name !== 'x-amz-crc32' && name !== 'transfer-encoding') raw.push(response.rawHeaders[i] as string, response.rawHeaders[i + 1] as string);
  }
  raw.push('Content-Length', String(text.byteLength));
  return { status: response.status, rawHeaders: raw, body: text };
}

export function parseJson(response: EdgeResponse): Record<string, unknown> {
  try {
    return JSON.parse(response.body.toString('utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
}

let requests = 0;
function requestId(): string {
  return `cairn-edge-${process.pid}-${++requests}`;
}
