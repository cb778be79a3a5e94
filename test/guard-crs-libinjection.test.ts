// @detectSQLi / @detectXSS (CRS 941100 941101 942100 942101) through libinjection in Debian's
// libmodsecurity3, the library ModSecurity itself runs: known payloads fire, ordinary values do not,
// TX.0 is what ModSecurity puts there, and without the library the rules are set aside.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compile, evaluate, DEBIAN_CRS_RULES_DIR, type GuardRequest } from '../src/guard/crs/index.js';
import { loadLibinjection, type Libinjection } from '../src/guard/crs/libinjection.js';
import { benign, rng } from '../bench/guard-crs-traffic.js';

const LIBMODSECURITY = '/usr/lib/x86_64-linux-gnu/libmodsecurity.so.3';
/** 1 MB through libinjection must take less than this (measured ≈ 25 ms on a loaded 2-core box). */
const MEGABYTE_CEILING_MS = 1500;
/** ordinary requests from the speed bench's mix that must score nothing */
const BENIGN_REQUESTS = 5000;

const haveLib = existsSync(LIBMODSECURITY);
const haveRules = existsSync(`${DEBIAN_CRS_RULES_DIR}/REQUEST-901-INITIALIZATION.conf`);
if (!haveLib) console.warn(`guard-crs-libinjection: ${LIBMODSECURITY} missing: run scripts/test-deps.sh (Debian libmodsecurity3)`);

/** payload → libinjection's fingerprint for it */
const SQLI: Record<string, string> = {
  "1' OR '1'='1": 's&sos',
  '1 UNION SELECT 1,2--': '1UE1c',
  "admin'--": 'sc',
  '1; DROP TABLE users': '1;Tnn',
  "' or 1=1#": 's&1c',
  "sdfsd'or 1 > 1": 's&1',
  '1) or sleep(5)#': '1)&f(',
  "-1' union all select null,null--": 'sUEvc',
};
const NOT_SQLI = ["O'Reilly", 'hello world', "it's a test", '2024-01-01', 'john.doe@example.com', 'select a colour', 'rock & roll',
  '5 - 3 = 2', 'Tom\'s "best" pizza', 'https://example.com/a?b=c', '1', '', 'Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0'];
const XSS = ['<script>alert(1)</script>', '<img src=x onerror=alert(1)>', '<svg onload=alert(1)>', '" onmouseover="alert(1)',
  '<iframe src=javascript:alert(1)>', '<a href="javascript:alert(1)">x</a>', '<body onload=alert(1)>'];
const NOT_XSS = ['a < b', 'x > 3 and y < 2', '<b>bold</b>', '<p>paragraph</p>', 'I <3 you', 'hello world', 'javascript is fun',
  'on click = yes', 'https://example.com/?a=1&b=2', 'Tom\'s "best" pizza'];

const H = { 'User-Agent': 'Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0', Host: 'example.com' };
const get = (uri: string, headers: Record<string, string> = H): GuardRequest => ({ method: 'GET', uri, protocol: 'HTTP/1.1', headers });
const ids = (rs: ReturnType<typeof compile>, req: GuardRequest) => evaluate(rs, req).matched.map((m) => m.id);

describe.skipIf(!haveLib)('libinjection from libmodsecurity3', () => {
  let li: Libinjection;
  beforeAll(() => {
    const got = loadLibinjection();
    expect(got.reason).toBeNull();
    li = got.lib!;
  });

  it('fingerprints known SQL injections and passes ordinary values', () => {
    expect(li.describe).toMatch(/^libinjection \d+\.\d+/);
    for (const [s, fp] of Object.entries(SQLI)) expect(li.sqli(s), s).toBe(fp);
    for (const s of NOT_SQLI) expect(li.sqli(s), s).toBeNull();
  });

  it('finds known XSS and passes ordinary values', () => {
    for (const s of XSS) expect(li.xss(s), s).toBe(true);
    for (const s of NOT_XSS) expect(li.xss(s), s).toBe(false);
  });

  it('sees the value as bytes, past the reused buffer too, and in linear time', () => {
    // a value longer than the reused buffer gets its own; a short one after it sees only its own bytes
    expect(li.sqli("1' OR '1'='1" + ' '.repeat(100_000))).toBe('s&sos');
    expect(li.xss('x'.repeat(100_000) + '<script>alert(1)</script>')).toBe(true);
    expect(li.sqli('1')).toBeNull();
    expect(li.xss('a')).toBe(false);
    // a NUL is a byte like any other: libinjection gets the whole length
    expect(li.xss('a\0<script>alert(1)</script>')).toBe(true);
    const big = ["1' or (".repeat(150_000), '<a b='.repeat(200_000), '/*'.repeat(500_000), '<'.repeat(1 << 20), "'".repeat(1 << 20)];
    const times: number[] = [];
    for (const s of big) {
      const t0 = performance.now();
      li.sqli(s);
      li.xss(s);
      times.push(Math.round(performance.now() - t0));
    }
    console.log('libinjection sqli+xss on 1 MB inputs (ms):', times);
    for (const t of times) expect(t).toBeLessThan(MEGABYTE_CEILING_MS);
  });

  it('loads once per library, and says why when it cannot', () => {
    expect(loadLibinjection().lib).toBe(li);
    const missing = loadLibinjection('/nonexistent/libinjection-missing.so');
    expect(missing.lib).toBeNull();
    expect(missing.reason).toMatch(/libinjection-missing\.so not loadable/);
    // a library without libinjection's symbols
    const other = loadLibinjection('libc.so.6');
    expect(other.lib).toBeNull();
    expect(other.reason).toMatch(/libc\.so\.6 not loadable/);
  });

  describe('ModSecurity semantics', () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'chicago-guard-inj-'));
      writeFileSync(join(dir, 'rules.conf'), [
        // capture: TX.0 is the fingerprint (SQLi) or the whole transformed value (XSS)
        `SecRule ARGS:a "@detectSQLi" "id:100,phase:2,pass,capture,t:none,t:urlDecodeUni,msg:'sqli [%{TX.0}] in %{MATCHED_VAR_NAME}'"`,
        `SecRule ARGS:b "@detectXSS" "id:101,phase:2,pass,capture,t:none,t:lowercase,msg:'xss [%{TX.0}]'"`,
        // without capture TX.0 is left as it was
        `SecRule ARGS:c "@detectSQLi" "id:102,phase:2,pass,t:none,msg:'nocapture [%{TX.0}]'"`,
        `SecRule ARGS:d "!@detectXSS" "id:103,phase:2,pass,t:none,msg:'negated'"`,
      ].join('\n') + '\n');
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('sets TX.0 with capture as ModSecurity does, on the transformed value', () => {
      const rs = compile(dir, { setupFile: null });
      expect(rs.stats.setAside).toEqual([]);
      expect(rs.stats.activeIds.sort()).toEqual([100, 101, 102, 103]);
      // %2527 is %27 after the query is decoded once, ' after t:urlDecodeUni
      const v = evaluate(rs, get('/?a=1%2527%20OR%20%25271%2527%3D%25271&b=%3CSCRIPT%3Ealert(1)%3C/SCRIPT%3E&d=plain'));
      expect(v.matched.map((m) => [m.id, m.msg])).toEqual([
        [100, 'sqli [s&sos] in ARGS:a'],
        [101, 'xss [<script>alert(1)</script>]'],
        [103, 'negated'],
      ]);
      const w = evaluate(rs, get("/?c=1'%20or%201=1%23&d=%3Cscript%3Ealert(1)%3C/script%3E"));
      expect(w.matched.map((m) => [m.id, m.msg])).toEqual([[102, 'nocapture []']]);
    });
  });

  describe.skipIf(!haveRules)('CRS at paranoia level 1', () => {
    let rs: ReturnType<typeof compile>;
    beforeAll(() => { rs = compile(DEBIAN_CRS_RULES_DIR, { paranoiaLevel: 1 }); });

    it('runs 941100 and 942100 and blocks what only libinjection catches', () => {
      expect(rs.stats.libinjection).toEqual({ available: true, detail: li.describe });
      expect(rs.stats.activeIds).toEqual(expect.arrayContaining([941100, 942100]));
      expect(rs.stats.setAside.filter((a) => a.reason.includes('libinjection'))).toEqual([]);
      // regression case 942390-1: no PL1 regex rule matches it, in ModSecurity either
      const v = evaluate(rs, get('/?var=sdfsd%27or%201%20%3e%201'));
      expect(v.matched.map((m) => m.id)).toEqual([942100, 949110]);
      expect(v.blocked).toBe(true);
      expect(ids(rs, get('/?x=%3Csvg%20onload%3Dalert(1)%3E'))).toContain(941100);
      expect(ids(rs, get('/', { ...H, 'User-Agent': "1' OR '1'='1" }))).toContain(942100);
      expect(ids(rs, get('/', { ...H, Referer: "http://x/?q=1' UNION SELECT 1,2--" }))).toContain(942100);
      // 941100 does not read the Referer (941101, PL2, does)
      expect(ids(rs, get('/', { ...H, Referer: '<script>alert(1)</script>' }))).not.toContain(941100);
    });

    it('scores nothing on ordinary traffic', () => {
      for (const s of [...NOT_SQLI, ...NOT_XSS]) {
        expect(ids(rs, get('/search?q=' + encodeURIComponent(s))), s).toEqual([]);
      }
      const r = rng(15);
      const hits: number[] = [];
      for (let i = 0; i < BENIGN_REQUESTS; i++) hits.push(...ids(rs, benign(r)));
      expect(hits).toEqual([]);
    });
  });
});

describe.skipIf(!haveRules)('without libinjection', () => {
  it('sets the libinjection rules aside, with the reason, and runs the rest', () => {
    const rs = compile(DEBIAN_CRS_RULES_DIR, { paranoiaLevel: 4, libinjectionLibrary: '/nonexistent/libinjection-missing.so' });
    expect(rs.stats.libinjection.available).toBe(false);
    expect(rs.stats.libinjection.detail).toMatch(/libinjection-missing\.so not loadable/);
    const aside = rs.stats.setAside.filter((a) => a.reason.includes('libinjection'));
    expect(aside.map((a) => a.id).sort()).toEqual([941100, 941101, 942100, 942101]);
    for (const a of aside) expect(a.reason).toMatch(/^@detect(SQLi|XSS) \(libinjection unavailable: .*libinjection-missing\.so not loadable/);
    expect(rs.stats.activeIds).not.toContain(942100);
    // the regex rules still judge: a UNION SELECT is blocked, 942390-1 is not (PL1)
    const pl1 = compile(DEBIAN_CRS_RULES_DIR, { paranoiaLevel: 1, libinjectionLibrary: null });
    expect(pl1.stats.libinjection).toEqual({ available: false, detail: 'disabled (libinjectionLibrary: null)' });
    expect(pl1.stats.setAside.filter((a) => a.reason.includes('libinjection')).map((a) => a.id).sort()).toEqual([941100, 942100]);
    expect(evaluate(pl1, get('/?id=1%27%20UNION%20SELECT%20password%20FROM%20users--')).blocked).toBe(true);
    expect(evaluate(pl1, get('/?var=sdfsd%27or%201%20%3e%201'))).toMatchObject({ score: 0, blocked: false });
  });
});
