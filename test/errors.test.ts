// The coded-error catalog (src/errors.ts) stays a catalog: every code unique and named after its
// constant, every error thrown somewhere in src/, and every code src/ branches on a real one.
// src/ is read with the TypeScript parser, so a name in a comment or a string does not count.
import t from 'tap'
import { readdir, readFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import ts from 'typescript'
import * as errors from '../src/errors.js'

const SRC = new URL('../src/', import.meta.url).pathname

type CodedErrorClass = new (...args: string[]) => errors.CodedError

const catalog: Array<{ name: string; error: errors.CodedError }> = Object.entries(errors as Record<string, unknown>)
  .filter((e): e is [string, CodedErrorClass] => e[0].startsWith('ERR_') && typeof e[1] === 'function')
  .map(([name, E]) => ({ name, error: new E('a', 'b', 'c') }))

async function sourceFiles (dir: string): Promise<string[]> {
  const out: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...await sourceFiles(path))
    else if (entry.name.endsWith('.ts')) out.push(path)
  }
  return out
}

/** Identifiers referenced outside import declarations, and codes src/ compares errors with. */
async function scan (): Promise<{ used: Map<string, string[]>; codesCompared: Map<string, string[]>; codePrefixes: Map<string, string[]> }> {
  const used = new Map<string, string[]>()
  const codesCompared = new Map<string, string[]>()
  const codePrefixes = new Map<string, string[]>()
  const note = (m: Map<string, string[]>, key: string, file: string): void => { m.set(key, [...(m.get(key) ?? []), file]) }
  for (const path of await sourceFiles(SRC)) {
    const file = relative(SRC, path)
    if (file === 'errors.ts') continue
    const source = ts.createSourceFile(path, await readFile(path, 'utf8'), ts.ScriptTarget.Latest, true)
    const visit = (node: ts.Node): void => {
      if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) return
      if (ts.isIdentifier(node) && node.text.startsWith('ERR_')) note(used, node.text, file)
      if (ts.isCallExpression(node)) {
        const callee = node.expression
        const name = ts.isIdentifier(callee) ? callee.text : ts.isPropertyAccessExpression(callee) ? callee.name.text : ''
        const code = node.arguments[name === 'isCodedError' ? 1 : 0]
        if (code !== undefined && ts.isStringLiteral(code) && code.text.startsWith('PULLPIN_')) {
          if (name === 'isCodedError') note(codesCompared, code.text, file)
          if (name === 'startsWith') note(codePrefixes, code.text, file)
        }
      }
      if (ts.isBinaryExpression(node) && (node.operatorToken.kind === ts.SyntaxKind.EqualsEqualsEqualsToken || node.operatorToken.kind === ts.SyntaxKind.ExclamationEqualsEqualsToken)) {
        for (const side of [node.left, node.right]) if (ts.isStringLiteral(side) && side.text.startsWith('PULLPIN_')) note(codesCompared, side.text, file)
      }
      ts.forEachChild(node, visit)
    }
    visit(source)
  }
  return { used, codesCompared, codePrefixes }
}

await t.test('every code is unique, PULLPIN_-prefixed and named after its constant', (t) => {
  t.ok(catalog.length > 10, 'the catalog is read')
  const codes = catalog.map((e) => e.error.code)
  t.same([...new Set(codes)].sort(), [...codes].sort(), 'no code twice')
  for (const { name, error } of catalog) {
    t.equal(error.code, `PULLPIN_${name.slice('ERR_'.length)}`, `${name}: code matches the constant`)
    t.ok(error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode <= 599, `${name}: an HTTP error status`)
    t.ok(error.message.length > 0, `${name}: a message`)
  }
  t.end()
})

await t.test('every error in the catalog is used in src/, and every code src/ compares with exists', async (t) => {
  const { used, codesCompared, codePrefixes } = await scan()
  for (const { name } of catalog) t.ok(used.has(name), `${name} is used in src/ (dead entries go)`)
  const known = new Set(catalog.map((e) => e.error.code))
  for (const [code, files] of codesCompared) t.ok(known.has(code), `${code} (compared in ${files.join(', ')}) is a catalog code`)
  for (const [prefix, files] of codePrefixes) t.ok([...known].some((c) => c.startsWith(prefix)), `${prefix} (prefix in ${files.join(', ')}) names catalog codes`)
  t.ok(codesCompared.size >= 2, `the comparisons are found: ${[...codesCompared.keys()].join(', ')}`)
})
