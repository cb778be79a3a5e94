// A deadline for one request, tied to a long-lived stop signal. `AbortSignal.any([AbortSignal.timeout(ms),
// stop])` keeps a WeakRef to every signal it made in `stop`'s list of dependants (Node 20), dropped
// only when `stop` aborts: an agent that sends a produce request every few ms grew that list (and the
// weak references every full collection walks) without bound.

/** A signal that aborts after `ms` (a TimeoutError, as AbortSignal.timeout's) or when `stop` does; call done() once the work it guards has settled. */
export function deadline(ms: number, stop?: AbortSignal): { signal: AbortSignal; done: () => void } {
  if (!(ms >= 0)) throw new Error(`deadline of ${ms} ms`);
  const ac = new AbortController();
  const onStop = (): void => ac.abort(stop!.reason);
  if (stop?.aborted) ac.abort(stop.reason);
  else stop?.addEventListener('abort', onStop, { once: true });
  const timer = setTimeout(() => ac.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')), ms);
  // as AbortSignal.timeout's: a pending deadline alone does not keep the process alive
  timer.unref();
  return {
    signal: ac.signal,
    done: () => {
      clearTimeout(timer);
      stop?.removeEventListener('abort', onStop);
    },
  };
}
