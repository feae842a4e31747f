// Self-signed certificates: a rotation puts the old and the new CA in one bundle; clients must
// then accept the new serving certificate (OpenSSL picks the issuer by subject name).
import t from 'tap'
import { createServer, connect } from 'node:tls'
import { X509Certificate } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { issueSelfSigned } from '../src/certs/self-signed.js'

const opts = { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] }

t.test('every CA has its own subject, and a bundle of old + new CA verifies the new certificate', async t => {
  const old = await issueSelfSigned(opts)
  const next = await issueSelfSigned(opts)
  t.not(new X509Certificate(old.ca!).subject, new X509Certificate(next.ca!).subject)
  const server = createServer({ cert: next.cert, key: next.key }, (s) => s.end('ok'))
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const { port } = server.address() as AddressInfo
  const authorized = await new Promise<boolean>((resolve) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: [old.ca!, next.ca!] })
    s.once('secureConnect', () => { resolve(s.authorized); s.destroy() })
    s.once('error', () => resolve(false))
  })
  t.equal(authorized, true)
})
