// The error catalogue as the table docs/protocol.md shows: generated from ERRORS so the docs cannot
// drift from the code (test/protocol-docs.test.ts compares; `npm run docs:errors` rewrites it).
import { ERRORS, type ErrorCode } from './errors.js';

export const ERROR_TABLE_BEGIN = '<!-- error catalogue: generated from src/runtime/errors.ts by `npm run docs:errors` -->';
export const ERROR_TABLE_END = '<!-- end of the error catalogue -->';

/** The message template with its `%s` slots shown as `…`. */
const shape = (message: string) => message.replace(/%s/g, '…').replace(/\|/g, '\\|');

export function errorTableMarkdown(): string {
  const rows = (Object.entries(ERRORS) as Array<[ErrorCode, (typeof ERRORS)[ErrorCode]]>)
    .sort(([, a], [, b]) => a.wire - b.wire)
    .map(([code, e]) => `| \`${code}\` | ${e.wire} | ${4000 + e.wire} | ${e.status} | ${e.retryable ? 'yes' : 'no'} | ${shape(e.message)} |`);
  return [
    ERROR_TABLE_BEGIN,
    '| code | wire | close code | HTTP status | retryable | message |',
    '|---|---:|---:|---:|---|---|',
    ...rows,
    ERROR_TABLE_END,
  ].join('\n');
}

/** `doc` with its catalogue block replaced by the current one (appended under `## Errors` if absent). */
export function withErrorTable(doc: string): string {
  const table = errorTableMarkdown();
  const begin = doc.indexOf(ERROR_TABLE_BEGIN);
  const end = doc.indexOf(ERROR_TABLE_END);
  if (begin >= 0 && end > begin) return doc.slice(0, begin) + table + doc.slice(end + ERROR_TABLE_END.length);
  throw new Error(`no error catalogue block (${ERROR_TABLE_BEGIN}) in the document`);
}
