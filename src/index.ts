// Public package entry: the pieces a program embedding pullpin (or a test) may use.
export { createApp, type App, type AppOptions } from './app.js'
export { parseConfig, loadConfig, validateConfig, type Config } from './policy/config.js'
export { configSchema } from './policy/config-schema.js'
export { createAdmissionHandler } from './admission/handler.js'
export { parseImageReference, formatImageReference, type ImageReference } from './reference/parse.js'
export * as errors from './errors.js'
