// Pods of one ReplicaSet (or Job…) must not end up on two different pins because the tag moved
// between their creations. The first pin given for (owner, image as written) is remembered,
// bounded by an LRU, and reused for that owner's later pods.
import { LRUCache } from 'lru-cache'

export interface RememberedPin {
  readonly to: string
  readonly verified: boolean
}

export class OwnerPins {
  private readonly pins: LRUCache<string, RememberedPin> | undefined
  constructor (max: number) {
    this.pins = max > 0 ? new LRUCache({ max }) : undefined
  }

  get (ownerUid: string, image: string): RememberedPin | undefined {
    return this.pins?.get(`${ownerUid}\u0000${image}`)
  }

  remember (ownerUid: string, image: string, pin: RememberedPin): void {
    const key = `${ownerUid}\u0000${image}`
    if (this.pins !== undefined && !this.pins.has(key)) this.pins.set(key, pin)
  }

  get size (): number { return this.pins?.size ?? 0 }
}
