// Reads what `pullpin review` is given: files, directories (recursively, *.yaml, *.yml, *.json,
// in name order so output is stable) and stdin as "-".
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { ReviewInputError } from './input.js'

const MANIFEST_FILE = /\.(ya?ml|json)$/i

export interface InputText { readonly file: string; readonly text: string }

export async function readInputs (paths: readonly string[], readStdin: () => Promise<string>): Promise<InputText[]> {
  const out: InputText[] = []
  for (const path of paths) {
    if (path === '-') { out.push({ file: '-', text: await readStdin() }); continue }
    let isDir: boolean
    try {
      isDir = (await stat(path)).isDirectory()
    } catch (err) {
      throw new ReviewInputError(path, undefined, `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
    if (!isDir) { out.push({ file: path, text: await readText(path) }); continue }
    for (const file of await manifestFiles(path)) out.push({ file, text: await readText(file) })
  }
  return out
}

async function manifestFiles (dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true })
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  const out: string[] = []
  for (const e of entries) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...await manifestFiles(p))
    else if (e.isFile() && MANIFEST_FILE.test(e.name)) out.push(p)
  }
  return out
}

export async function readText (file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    throw new ReviewInputError(file, undefined, `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}
