/**
 * The Kubernetes proxy's port-forward observer, for the tests that drive it or speak its
 * SPDY/3 by hand (the header dictionary). Its module is private to src/auth/kubernetes/.
 */

export {
  BLOCK_OVERHEAD,
  DEFAULT_OBSERVER_LIMITS,
  PortForwardObserver,
  SPDY3_DICTIONARY,
  portNumber,
  urlPorts,
  type ObserverLimits,
  type PortForwardFraming,
  type UnparsedReason,
} from "../../src/auth/kubernetes/_portforward_observer.ts";
