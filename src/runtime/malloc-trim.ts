// glibc keeps freed heap pages that sit below a live allocation until malloc_trim(0) hands them
// back (MALLOC_TRIM_THRESHOLD_ only trims the top of the heap), and Node has no call for it. An idle
// process that grew during a burst calls it through koffi after a full GC; elsewhere (no glibc, no
// koffi) there is nothing to call.
import { libcFunction } from './libc.js';

let trim: ((pad: number) => unknown) | null | undefined;

/** malloc_trim(0) when glibc and koffi are there; false when they are not. */
export function mallocTrim(): boolean {
  if (trim === undefined) trim = libcFunction('int malloc_trim(size_t pad)');
  if (!trim) return false;
  trim(0);
  return true;
}
