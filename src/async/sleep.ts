// The one sleep. It never rejects: it resolves true when the time has passed and false as soon as
// `signal` aborts, so a loop that stops on abort reads `if (!await sleep(ms, signal)) break`, and
// an operation that must fail on abort throws abortReason(signal) itself.

export function sleep (ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) { resolve(false); return }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(true) }, ms)
    const onAbort = (): void => { clearTimeout(timer); resolve(false) }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
