// A piscina task: parse one large record batch off the gateway thread.
import { parseRecordsOutcome, type ParseOutcome } from './bodies.js';

export default function parse(task: { body: Uint8Array; contentType: string }): ParseOutcome {
  return parseRecordsOutcome(Buffer.from(task.body.buffer, task.body.byteOffset, task.body.byteLength), task.contentType);
}
