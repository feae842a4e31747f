// "A pod of this revision already admitted": the pins pullpin recorded on pods of one rollout
// revision (the pullpin.io/pins annotation), so a replica that has not seen the revision, or has
// just restarted, gives its pods the pins the first pod got (src/cache/rollout-pins.ts).
// One list request per call: the namespace, the revision's label selector, a small limit, and
// metadata only (the annotation is all that is read), within the review's remaining budget.
import type { ClusterConnection } from './connection.js'
import { METADATA_ONLY, callOptions, describeError } from './kube-api.js'
import { PINS_ANNOTATION } from '../policy/annotations.js'
import type { AdmittedPinsReader } from '../cache/rollout-pins.js'

/**
 * Items per request. Not 1: the first pod the API server returns (in name order) may carry no
 * pins (created while pullpin was off, in audit mode, or with nothing to pin), and pods of the
 * revision made by someone other than its controller are skipped. A page of metadata stays small.
 */
export const ADMITTED_PODS_PAGE = 8

export function createAdmittedPinsReader (connection: ClusterConnection): AdmittedPinsReader {
  return async (revision, signal) => {
    let list
    try {
      list = await connection.core.listNamespacedPod({
        namespace: revision.namespace,
        labelSelector: `${revision.label.name}=${revision.label.value}`,
        limit: ADMITTED_PODS_PAGE,
      }, callOptions({ signal, accept: METADATA_ONLY }))
    } catch (err) {
      // The client's own message embeds the whole response; the log gets one line.
      throw new Error(signal.aborted ? 'no answer within the review\'s budget' : describeError(err))
    }
    const found: Array<{ at: number; name: string; pins: string }> = []
    for (const pod of list.items) {
      const meta = pod.metadata
      const pins = meta?.annotations?.[PINS_ANNOTATION]
      if (pins === undefined) continue
      // Only pods of the same controller (the label alone can be set on any pod).
      if (meta?.ownerReferences?.some(o => o.controller === true && o.uid === revision.ownerUid) !== true) continue
      found.push({ at: meta.creationTimestamp?.getTime() ?? Infinity, name: meta.name ?? '', pins })
    }
    // The oldest first: if two replicas ever pinned one revision differently (README "Pinning"),
    // every later pod follows the first pod.
    found.sort((a, b) => a.at - b.at || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    return found.map(f => f.pins)
  }
}
