// Review log lines are bounded whatever the pod. A pod of a few MiB (thousands of containers,
// or one image name of a megabyte: webhooks run before the API server validates the object) once
// made one review write a line ten times the size of the pod, with every warning, diagnostic and
// change in it (issue 11). Each list field keeps its first items within a character budget, like
// the 4 KiB warning budget of warnings.ts, and says what it left out: `<field>Total` (how many
// there were) and `<field>LeftOut` (how many are not in the line). Single strings are cut with
// an ellipsis and a count of the characters cut.

/** At most this many items of one list field in a line. */
export const LOG_LIST_MAX_ITEMS = 20
/** At most this many characters of one list field's items together. */
export const LOG_LIST_MAX_CHARS = 4096
/** At most this many characters of one string value (a warning, an image, a pod name). */
export const LOG_STRING_MAX_CHARS = 512

/** `s` cut to LOG_STRING_MAX_CHARS, saying how much was cut. */
export function logString (s: string): string {
  return s.length <= LOG_STRING_MAX_CHARS ? s : `${s.slice(0, LOG_STRING_MAX_CHARS)}…(${s.length - LOG_STRING_MAX_CHARS} more characters)`
}

type Loggable = string | { readonly [k: string]: unknown }

/** The string fields of a logged object cut by logString; the object itself when none needs cutting. */
function logItem<T extends Loggable> (item: T): { value: T; chars: number } {
  if (typeof item === 'string') {
    const value = logString(item)
    return { value: value as T, chars: value.length }
  }
  let chars = 0
  let copy: Record<string, unknown> | undefined
  for (const key of Object.keys(item)) {
    const v = item[key]
    if (typeof v !== 'string') { chars += 8; continue }
    const cut = logString(v)
    chars += key.length + cut.length
    if (cut !== v) (copy ??= { ...item })[key] = cut
  }
  return { value: (copy ?? item) as T, chars }
}

/**
 * Adds `name` to `fields`: the first items of `items` within the budgets, each cut by logString,
 * and when some are left out, `${name}Total` and `${name}LeftOut`. A short list is passed as it is
 * (no copy: the common line costs nothing more).
 */
export function addLogList<T extends Loggable> (fields: Record<string, unknown>, name: string, items: readonly T[]): void {
  let chars = 0
  let kept: T[] | undefined
  const n = Math.min(items.length, LOG_LIST_MAX_ITEMS)
  let i = 0
  for (; i < n; i++) {
    const item = items[i]!
    const { value, chars: c } = logItem(item)
    if (chars + c > LOG_LIST_MAX_CHARS && i > 0) break
    chars += c
    if (value !== item) kept ??= items.slice(0, i)
    kept?.push(value)
  }
  if (i === items.length) {
    fields[name] = kept ?? items
    return
  }
  fields[name] = kept ?? items.slice(0, i)
  fields[`${name}Total`] = items.length
  fields[`${name}LeftOut`] = items.length - i
}

/** An error for a log line: itself, or when its message is too long, its name, code and the message cut. */
export function logError (err: unknown): unknown {
  if (!(err instanceof Error) || err.message.length <= LOG_STRING_MAX_CHARS) return err
  const code = (err as { code?: unknown }).code
  return { type: err.name, ...(typeof code === 'string' ? { code } : {}), message: logString(err.message) }
}
