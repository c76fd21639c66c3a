/** `cairn/embedded`: the engine on one machine, no AWS: in memory or in a durable state directory. */
export { EmbeddedRuntime, type RuntimeCounters, type RuntimeFaults, type RuntimeOptions } from './runtime.js';
