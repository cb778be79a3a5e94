// libinjection, the SQLi/XSS tokenizer behind ModSecurity's @detectSQLi and @detectXSS, called in
// the library ModSecurity itself uses: Debian's libmodsecurity3 exports libinjection's C API. It is
// bound with koffi on first use, so the guard starts without it (the rules are then set aside).
import { createRequire } from 'node:module';
import { strict as assert } from 'node:assert';

/** Debian's libmodsecurity3 (found by the dynamic loader's search path). */
export const DEFAULT_LIBINJECTION_LIBRARY = 'libmodsecurity.so.3';

export interface Libinjection {
  /** the library and libinjection's version, for logs */
  readonly describe: string;
  /** libinjection_sqli on the value's bytes (one char per byte): the fingerprint when it is SQLi, else null */
  sqli(value: string): string | null;
  /** libinjection_xss on the value's bytes */
  xss(value: string): boolean;
}

export type LibinjectionLoad = { lib: Libinjection; reason: null } | { lib: null; reason: string };

/** Inputs up to this many bytes go through one reused buffer (values are capped before their transformations; longer ones get their own). */
const SCRATCH_BYTES = 64 * 1024;
/** libinjection writes a NUL-terminated fingerprint of at most 5 tokens into char[8]. */
const FINGERPRINT_BYTES = 8;

const loaded = new Map<string, LibinjectionLoad>();

/** Loads libinjection from `library` once per process; the reason when it cannot. */
export function loadLibinjection(library: string = DEFAULT_LIBINJECTION_LIBRARY): LibinjectionLoad {
  let got = loaded.get(library);
  if (got === undefined) {
    got = bind(library);
    loaded.set(library, got);
  }
  return got;
}

interface Koffi {
  load(path: string): { func(decl: string): (...args: unknown[]) => unknown };
}

function bind(library: string): LibinjectionLoad {
  let koffi: Koffi;
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi;
  } catch (e) {
    return { lib: null, reason: `koffi (FFI) not loadable: ${(e as Error).message.split('\n')[0]}` };
  }
  let sqliFn: (s: Buffer, n: number, fp: Buffer) => unknown;
  let xssFn: (s: Buffer, n: number) => unknown;
  let version: string;
  try {
    const lib = koffi.load(library);
    sqliFn = lib.func('int libinjection_sqli(const uint8_t *s, size_t slen, _Out_ uint8_t *fingerprint)') as typeof sqliFn;
    xssFn = lib.func('int libinjection_xss(const uint8_t *s, size_t slen)') as typeof xssFn;
    version = String(lib.func('const char *libinjection_version()')());
  } catch (e) {
    return { lib: null, reason: `${library} not loadable: ${(e as Error).message.split('\n')[0]}` };
  }
  const scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  const fp = Buffer.alloc(FINGERPRINT_BYTES);
  // the value's bytes: JS strings here hold one byte per char (latin1)
  const input = (s: string): Buffer => (s.length <= SCRATCH_BYTES ? (scratch.write(s, 0, 'latin1'), scratch) : Buffer.from(s, 'latin1'));
  const lib: Libinjection = {
    describe: `libinjection ${version} (${library})`,
    sqli(value) {
      fp.fill(0);
      if (sqliFn(input(value), value.length, fp) === 0) return null;
      const end = fp.indexOf(0);
      assert(end !== 0, 'libinjection_sqli matched with an empty fingerprint');
      return fp.toString('latin1', 0, end < 0 ? FINGERPRINT_BYTES : end);
    },
    xss(value) {
      return xssFn(input(value), value.length) !== 0;
    },
  };
  return { lib, reason: null };
}
