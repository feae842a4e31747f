// Annotations pullpin reads or writes on pods (README "Labels and annotations").

/** `"true"` on a pod: pullpin leaves it alone. */
export const SKIP_ANNOTATION = 'pullpin.io/skip'
/** Comma-separated names of containers (and image volumes) pullpin leaves alone: no secret, pin or check. */
export const SKIP_CONTAINERS_ANNOTATION = 'pullpin.io/skip-containers'
/** JSON object container name → the image as written before pullpin pinned it. */
export const ORIGINAL_IMAGES_ANNOTATION = 'pullpin.io/original-images'
/**
 * JSON object container name → { image (as written), pin (what pullpin wrote), digest }: what a pod
 * was pinned to, read back by other replicas for the pods of the same rollout revision.
 */
export const PINS_ANNOTATION = 'pullpin.io/pins'
