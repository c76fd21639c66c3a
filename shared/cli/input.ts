import { createReadStream, existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { IngressMessage } from '../core/ingest.js';
import { UsageError } from './jobs.js';

/**
 * `cairn run --input <file|->`: one JSON event per line. Each line becomes one ingress message
 * with the id `line:<n>` (1-based), so a resumed run over the same file skips what was already
 * ingested, and a bad line's dead letter says which line it was (`ingress:line:<n>`). Blank lines
 * are skipped. Validation is the ingest's own (malformed JSON, schema, size), as for SQS input.
 */
export async function readInput(source: string, stdin: NodeJS.ReadableStream = process.stdin): Promise<IngressMessage[]> {
  if (source !== '-' && !existsSync(source)) throw new UsageError(`input file ${source} does not exist`);
  const lines = createInterface({ input: source === '-' ? stdin : createReadStream(source, 'utf8'), crlfDelay: Infinity });
  const events: IngressMessage[] = [];
  let n = 0;
  for await (const line of lines) {
    n++;
    if (line.trim() === '') continue;
    events.push({ id: `line:${n}`, body: line });
  }
  return events;
}

/** `ingress:line:7` -> 7: where a dead letter of `--input` came from. */
export function inputLineOf(deadLetterId: string): number | undefined {
  const match = /^ingress:line:(\d+)$/.exec(deadLetterId);
  return match ? Number(match[1]) : undefined;
}
