// Wait for a condition instead of sleeping a guessed time: polls every 5 ms, fails with what it
// waited for. Returns how long it took (tests report it as a measured number).
export async function until (what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<number> {
  const started = Date.now()
  while (!(await cond())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
  return Date.now() - started
}
