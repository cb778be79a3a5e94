// chicago tail's filters and output forms, as pure functions.
import { describe, expect, it } from 'vitest';
import { compileFormat, tailView, type TailRecord } from '../src/cli/commands/tail-view.js';

const rec = (over: Partial<TailRecord> = {}): TailRecord => ({ partition: 2, offset: 7, timestamp: 1796500000000, key: 'k1', value: 'GET /x 500', headers: { task: 'web', host: 'h1' }, ...over });

describe('tail view', () => {
  it('filters on every --where header and on --grep over the value', () => {
    const v = tailView({ topic: 't', where: ['task=web', 'host=h1'], grep: ' 5\\d\\d$', command: 'tail' });
    expect(v.matches(rec())).toBe(true);
    expect(v.matches(rec({ headers: { task: 'web', host: 'h2' } }))).toBe(false);
    expect(v.matches(rec({ headers: { task: 'web' } }))).toBe(false);
    expect(v.matches(rec({ value: 'GET /x 200' }))).toBe(false);
    expect(tailView({ topic: 't', where: ['q=a=b'], command: 'tail' }).matches(rec({ headers: { q: 'a=b' } }))).toBe(true);
    expect(() => tailView({ topic: 't', where: ['nokey'], command: 'tail' })).toThrow(/HEADER=VALUE/);
    expect(() => tailView({ topic: 't', where: [], grep: '(', command: 'tail' })).toThrow(/--grep/);
  });

  it('renders JSON lines, values, or a kcat-style format', () => {
    expect(JSON.parse(tailView({ topic: 't', where: [], command: 'tail' }).render(rec()))).toEqual({ partition: 2, offset: 7, timestamp: 1796500000000, key: 'k1', value: 'GET /x 500', headers: { task: 'web', host: 'h1' } });
    expect(tailView({ topic: 't', where: [], format: 'value', command: 'tail' }).render(rec())).toBe('GET /x 500');
    expect(tailView({ topic: 'logs', where: [], format: '%t/%p@%o %T %k=%s [%h] %S%%\\n', command: 'tail' }).render(rec())).toBe('logs/2@7 1796500000000 k1=GET /x 500 [task=web,host=h1] 10%');
    expect(compileFormat('%s\\t%k', 't', 'tail')(rec({ key: null }))).toBe('GET /x 500\t');
    expect(() => compileFormat('%z', 't', 'tail')).toThrow(/unknown token '%z'/);
    expect(() => compileFormat('50%', 't', 'tail')).toThrow(/unknown token/);
  });

  it('keeps the flags of a key or value that is not UTF-8 in JSON lines and prints its bytes otherwise', () => {
    const bin = rec({ key: Buffer.from([0x6b, 0xff]).toString('base64'), keyEncoding: 'base64', value: Buffer.from([0x61, 0xff, 0xfe]).toString('base64'), valueEncoding: 'base64' });
    expect(JSON.parse(String(tailView({ topic: 't', where: [], command: 'tail' }).render(bin)))).toMatchObject({ key: 'a/8=', keyEncoding: 'base64', value: 'Yf/+', valueEncoding: 'base64' });
    expect(tailView({ topic: 't', where: [], format: 'value', command: 'tail' }).render(bin)).toEqual(Buffer.from([0x61, 0xff, 0xfe]));
    expect(compileFormat('%k|%s|%S', 't', 'tail')(bin)).toEqual(Buffer.concat([Buffer.from([0x6b, 0xff]), Buffer.from('|'), Buffer.from([0x61, 0xff, 0xfe]), Buffer.from('|3')]));
    expect(tailView({ topic: 't', where: [], grep: '^a', command: 'tail' }).matches(bin)).toBe(true);
  });
});
