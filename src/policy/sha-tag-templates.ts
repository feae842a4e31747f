// pinning.shaTagTemplates: how CI names the immutable tag of a commit, so the revision an image
// carries (org.opencontainers.image.revision) turns into the few tags worth asking the registry
// about, instead of HEADing every SHA tag of the repository (issue 15).
//
// A template is literal text with `{revision}` (the whole revision) or `{revision:N}` (its first N
// characters, as `git rev-parse --short=N` and docker/metadata-action's `type=sha` give) in it.
import { isValidTag } from '../reference/parse.js'

export type ShaTagTemplate = (revision: string) => string

const PLACEHOLDER = /\{revision(?::(\d{1,2}))?\}/g

/** A revision that no real commit has, for checking templates against the SHA patterns at start. */
const SAMPLE_REVISION = '0123456789abcdef0123456789abcdef01234567'

/**
 * Compiles a template, or says why it cannot be one: it names no revision, a prefix length is 0 or
 * above 64, or (the check that matters) the tags it makes are not SHA tags by `shaTagPatterns`, so
 * pullpin would pin to a tag it then treats as mutable.
 */
export function compileShaTagTemplate (template: string, shaTagPatterns: readonly RegExp[]): ShaTagTemplate | string {
  let placeholders = 0
  for (const m of template.matchAll(PLACEHOLDER)) {
    placeholders++
    const n = m[1] === undefined ? undefined : Number(m[1])
    if (n !== undefined && (n < 1 || n > 64)) return `${m[0]}: the length must be 1 to 64`
  }
  if (placeholders === 0) return 'names no {revision} or {revision:N}'
  const render: ShaTagTemplate = (revision) => template.replace(PLACEHOLDER, (_all, n: string | undefined) => n === undefined ? revision : revision.slice(0, Number(n)))
  const sample = render(SAMPLE_REVISION)
  if (!isValidTag(sample)) return `gives ${JSON.stringify(sample)} for a revision, which is not a valid tag`
  if (!shaTagPatterns.some(re => re.test(sample))) {
    return `gives tags like ${JSON.stringify(sample)}, which no pinning.shaTagPatterns entry matches: pullpin would treat them as mutable; change the template or add a pattern`
  }
  return render
}

/**
 * The commit a revision value names, lower case, or undefined. Git object names only (7 to 64 hex
 * digits, SHA-1 or SHA-256), also in the `<ref>@sha1:<hex>` form Flux writes: the value comes from
 * image metadata anyone who can push may set, and it only ever becomes a tag through a template.
 */
export function commitOf (revision: string): string | undefined {
  const m = /(?:^|[@:])([0-9a-fA-F]{7,64})$/.exec(revision.trim())
  return m?.[1]?.toLowerCase()
}

/** The candidate tags of a revision, in template order, each once, only valid SHA tags. */
export function candidateTags (revision: string, templates: readonly ShaTagTemplate[], shaTagPatterns: readonly RegExp[]): string[] {
  const commit = commitOf(revision)
  if (commit === undefined) return []
  const tags: string[] = []
  for (const render of templates) {
    const tag = render(commit)
    if (!tags.includes(tag) && isValidTag(tag) && shaTagPatterns.some(re => re.test(tag))) tags.push(tag)
  }
  return tags
}
