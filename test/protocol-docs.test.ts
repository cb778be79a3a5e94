// docs/protocol.md's error catalogue is the code's: every code, wire number, close code, HTTP status
// and retryability in src/runtime/errors.ts, and nothing else.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERRORS } from '../src/runtime/errors.js';
import { ERROR_TABLE_BEGIN, ERROR_TABLE_END, errorTableMarkdown, withErrorTable } from '../src/runtime/error-table.js';

const doc = readFileSync(path.join(import.meta.dirname, '..', 'docs', 'protocol.md'), 'utf8');

describe('docs/protocol.md error catalogue', () => {
  it('is the table generated from errors.ts (run `npm run docs:errors` after changing the catalogue)', () => {
    const begin = doc.indexOf(ERROR_TABLE_BEGIN);
    const end = doc.indexOf(ERROR_TABLE_END);
    expect(begin).toBeGreaterThan(0);
    expect(doc.slice(begin, end + ERROR_TABLE_END.length)).toBe(errorTableMarkdown());
    expect(withErrorTable(doc)).toBe(doc);
  });

  it('lists every code once with its wire number, close code, status and retryability', () => {
    const rows = doc.split('\n').filter((l) => /^\| `[A-Z0-9_]+` \| \d+ \|/.test(l));
    expect(rows).toHaveLength(Object.keys(ERRORS).length);
    for (const [code, e] of Object.entries(ERRORS)) {
      const row = rows.find((r) => r.startsWith(`| \`${code}\` |`));
      expect(row, code).toBeDefined();
      expect(row!.split('|').slice(2, 6).map((c) => c.trim())).toEqual([String(e.wire), String(4000 + e.wire), String(e.status), e.retryable ? 'yes' : 'no']);
    }
    // wire numbers never repeat
    expect(new Set(Object.values(ERRORS).map((e) => e.wire)).size).toBe(Object.keys(ERRORS).length);
  });
});
