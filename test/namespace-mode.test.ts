import t from 'tap'
import { parseConfig } from '../src/policy/config.js'
import { createNamespacePolicy } from '../src/policy/namespace-mode.js'
import { staticNamespaceLabels } from '../src/policy/static-namespaces.js'

const config = parseConfig('namespaces: {exclude: [kube-system, "kube-*", "tmp-?"]}')
const policy = createNamespacePolicy(config, 'pullpin-system')
const label = (v: string) => ({ 'pullpin.io/inject': v })

t.test('label values choose the mode', async t => {
  t.equal(policy.decide('team-a', label('enabled')).mode, 'enforce')
  t.equal(policy.decide('team-a', label('audit')).mode, 'audit')
  t.equal(policy.decide('team-a', label('disabled')).mode, 'off')
  t.equal(policy.decide('team-a', {}).mode, 'off')
  t.equal(policy.decide('team-a', undefined).reason, 'namespace unknown')
  t.match(policy.decide('team-a', label('yes')).reason, /unknown label value "yes"/)
})

t.test('selection: all takes every namespace but the excluded and the disabled ones', async t => {
  const p = createNamespacePolicy(parseConfig('namespaces: {selection: all, exclude: [kube-system]}'), 'pullpin-system')
  t.equal(p.decide('team-a', {}).mode, 'enforce', 'no label: the configured mode')
  t.equal(p.decide('team-a', undefined).mode, 'enforce', 'not listed yet: reviewed as it would be once listed')
  t.equal(p.decide('team-a', label('audit')).mode, 'audit', 'audit still means audit')
  t.equal(p.decide('team-a', label('disabled')).mode, 'off', 'disabled opts out')
  t.equal(p.decide('kube-system', {}).mode, 'off')
  t.equal(p.decide('pullpin-system', {}).mode, 'off')
  t.equal(createNamespacePolicy(parseConfig('mode: audit\nnamespaces: {selection: all}'), undefined).decide('x', {}).mode, 'audit')
})

t.test('mode: audit makes "enabled" namespaces audit', async t => {
  const p = createNamespacePolicy(parseConfig('mode: audit'), undefined)
  t.equal(p.decide('team-a', label('enabled')).mode, 'audit')
})

t.test('exclusions win over labels; own namespace always excluded', async t => {
  t.same(policy.decide('kube-system', label('enabled')), { mode: 'off', reason: 'excluded' })
  t.equal(policy.decide('kube-node-lease', label('enabled')).mode, 'off')
  t.equal(policy.decide('tmp-1', label('enabled')).mode, 'off')
  t.equal(policy.decide('tmp-12', label('enabled')).mode, 'enforce')
  t.same(policy.decide('pullpin-system', label('enabled')), { mode: 'off', reason: 'own namespace' })
})

t.test('a custom opt-in label is read', async t => {
  const p = createNamespacePolicy(parseConfig('namespaces: {optInLabel: example.com/pull}'), undefined)
  t.equal(p.decide('a', { 'example.com/pull': 'enabled' }).mode, 'enforce')
  t.equal(p.decide('a', label('enabled')).mode, 'off')
})

t.test('static labels: a namespace named like an Object.prototype member has no labels', async t => {
  const labels = staticNamespaceLabels(parseConfig('namespaces: { labels: { team-a: { pullpin.io/inject: enabled } } }'))
  t.same(await labels.labels('team-a'), { 'pullpin.io/inject': 'enabled' })
  for (const ns of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) t.same(await labels.labels(ns), {}, ns)
})
