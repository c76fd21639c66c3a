import { describeJob } from '../core/definition.js';
import { table } from './format.js';
import { resolveJob } from './jobs.js';

/** `cairn describe <job> [--json]`: the job's vertices as deployed (the CairnJob construct reads the JSON). */
export async function describeCommand(job: string, options: { json?: boolean }, print: (line?: string) => void = (line = '') => void process.stdout.write(`${line}\n`)): Promise<number> {
  const description = describeJob(await resolveJob(job));
  if (options.json) {
    print(JSON.stringify(description));
    return 0;
  }
  print(`job ${description.name}: ${description.vertices.length} vertices (one FIFO queue and one function each on AWS)`);
  print();
  print(
    table(
      ['vertex', 'instances', 'sends to', 'sink'],
      description.vertices.map((v) => [v.id, String(v.parallelism), v.downstream.join(', ') || '-', v.sink ? `${v.sink.uid} (${v.sink.mode})` : '-']),
    ),
  );
  return 0;
}
