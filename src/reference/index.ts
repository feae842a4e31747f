// Public surface of image-reference handling: parsing/normalizing image strings and matching
// them against kubelet-style registry globs.
export {
  DEFAULT_REGISTRY,
  DEFAULT_TAG,
  formatImageReference,
  isValidDigest,
  isValidTag,
  parseImageReference,
  tryParseImageReference,
  type ImageReference,
  type ReferenceParse,
} from './parse.js'
export {
  compileRegistryGlob,
  compileRegistryKey,
  isDockerHubImage,
  normalizedImageName,
  normalizeRegistryKey,
  registryGlobMatches,
  registryUrlsMatch,
  type CompiledRegistryKey,
  type RegistryImage,
} from './host-glob.js'
