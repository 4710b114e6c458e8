// Constants shared by the policy side of L7 (policy-maps.ts) and the proxy.

/** The port the transparent L7 proxy listens on; policy entries that carry
 *  http rules redirect to it (policy value proxy_port). */
export const DEFAULT_L7_PROXY_PORT = 15001;
