// Writing to stdout: respect backpressure so a slow pipe never makes the CLI buffer without bound.
import { once } from 'node:events';

export async function write(chunk: string | Uint8Array): Promise<void> {
  if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
}

export const line = (text: string): Promise<void> => write(text + '\n');

/** `version=12 replicas=1`: flat fields of a response, for people and for `grep`. */
export function fields(obj: object): string {
  return Object.entries(obj)
    .filter(([, v]) => v !== undefined && typeof v !== 'object')
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(' ');
}

/** Columns padded to their widest cell; the last column is not padded. */
export function table(header: string[], rows: Array<Array<string | number>>): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  '))
    .join('\n');
}
