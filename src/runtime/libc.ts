// glibc calls Node has no binding for, reached through koffi (loaded on the first call). Null where
// there is no glibc or no koffi (another libc, another OS): callers then do without, or the long way.
import { requireCjs } from './require.js';

type CFunction = (...args: unknown[]) => unknown;
interface Koffi {
  load(path: string): { func(decl: string): CFunction };
}

let libc: { func(decl: string): CFunction } | null | undefined;

/** The glibc function declared by `decl` (a C prototype), or null. */
export function libcFunction(decl: string): CFunction | null {
  if (libc === undefined) {
    try {
      libc = (requireCjs('koffi') as Koffi).load('libc.so.6');
    } catch {
      libc = null;
    }
  }
  if (!libc) return null;
  try {
    return libc.func(decl);
  } catch {
    return null;
  }
}
