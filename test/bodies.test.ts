// Request bodies: the records parser takes any depth from JSON.parse but keeps nothing deep (a
// non-string value deeper than jsonDepthMax, nested headers), so nothing later overflows the stack
// in JSON.stringify, structured clone or msgpack; other bodies are refused before they are parsed.
import { describe, expect, it } from 'vitest';
import { parseJson, parseRecords } from '../src/gateway/bodies.js';
import { limits } from '../src/runtime/limits.js';
import { ChicagoError } from '../src/runtime/errors.js';

const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);
const code = (f: () => unknown) => { try { f(); return 'ok'; } catch (e) { return e instanceof ChicagoError ? e.code : `not a ChicagoError: ${(e as Error).name}`; } };

describe('request bodies', () => {
  it('refuses a record value nested past the limit, as an array body and as NDJSON, and keeps one within it', () => {
    const deep = Buffer.from(`[{"value":${nested(100_000)}}]`);
    expect(code(() => parseRecords(deep, 'application/json'))).toBe('BAD_REQUEST');
    expect(code(() => parseRecords(Buffer.from(`{"value":${nested(limits.jsonDepthMax + 1)}}\n`), 'application/x-ndjson'))).toBe('BAD_REQUEST');
    const ok = parseRecords(Buffer.from(`[{"value":${nested(limits.jsonDepthMax)}},{"value":"text","headers":{"a":"b"}}]`), 'application/json');
    expect(ok[0].value.toString()).toBe(nested(limits.jsonDepthMax));
    expect(ok[1]).toMatchObject({ headers: { a: 'b' } });
  });

  it('refuses headers that are not flat strings, however deep', () => {
    expect(code(() => parseRecords(Buffer.from(`[{"value":"v","headers":{"a":${nested(100_000)}}}]`), 'application/json'))).toBe('INVALID_ARGUMENT');
    expect(code(() => parseRecords(Buffer.from('[{"value":"v","headers":{"a":1}}]'), 'application/json'))).toBe('INVALID_ARGUMENT');
  });

  it('refuses deep nesting anywhere in other bodies before parsing them', () => {
    expect(code(() => parseJson(Buffer.from(`{"retention":${nested(100_000)}}`), 'body'))).toBe('BAD_REQUEST');
    // a deep body that is not an array of records is refused for its shape, not by a stack overflow
    expect(code(() => parseRecords(Buffer.from(nested(100_000)), 'application/json'))).toBe('BAD_REQUEST');
  });
});
