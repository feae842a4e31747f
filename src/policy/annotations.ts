// Annotations pullpin reads or writes on pods (README "Labels and annotations").

/** `"true"` on a pod: pullpin leaves it alone. */
export const SKIP_ANNOTATION = 'pullpin.io/skip'
/** Comma-separated names of containers (and image volumes) pullpin leaves alone: no secret, pin or check. */
export const SKIP_CONTAINERS_ANNOTATION = 'pullpin.io/skip-containers'
/**
 * JSON object container name → { image (as written), pin (what pullpin wrote), digest }: what a pod
 * was pinned to, for `kubectl get pod -o yaml`, and read back by other replicas for the pods of the
 * same rollout revision. The one record: it replaced pullpin.io/original-images, which held only
 * the `image` part (BENCHMARKS.md, "One record of the pins").
 */
export const PINS_ANNOTATION = 'pullpin.io/pins'
