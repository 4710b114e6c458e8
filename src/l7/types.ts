// L7 HTTP policy: the shapes shared by the policy compiler (which turns
// HyphaNetworkPolicy http rules into these), the transparent proxy (which
// checks each request against them) and `hypha policy trace --http`.
//
// A flow the datapath redirects to the proxy was allowed at L3/L4 by an
// entry that carries http rules. The proxy asks, for each connection, which
// checks apply (FlowChecks): one per direction whose entry carries rules
// (egress of a local source pod, ingress of a local destination pod). A
// request passes when every check passes; a check passes when some rule of
// it matches (or it is 'all': a plain L3/L4 allow covers the same flow, so
// every request is allowed in that direction, as in Cilium).

export type PathMatch =
  | { kind: 'exact'; value: string }
  | { kind: 'prefix'; value: string }
  /** RE2 syntax; matches the whole path (anchored at both ends). */
  | { kind: 'regex'; value: string };

export interface HeaderMatch {
  /** Compared case-insensitively. */
  name: string;
  /** Absent: the header must be present (any value). */
  value?: string;
}

/** One http rule of one port of one HyphaNetworkPolicy rule. Every field
 *  given must match; a rule with none matches every request. */
export interface HttpRule {
  /** Upper case, compared exactly ('GET'). */
  method?: string;
  /** Against the request path without its query string. */
  path?: PathMatch;
  /** Against the Host header (or the authority of an absolute-form
   *  target), without a port, case-insensitively. */
  host?: string;
  headers?: HeaderMatch[];
  /** Where the rule comes from: 'ns/name' and its place, for the 403 body,
   *  the access log and trace: 'ingress[0].ports[1].http[2]'. */
  policy: string;
  rule: string;
}

export interface DirectionCheck {
  direction: 'ingress' | 'egress';
  /** 'ns/name' of the local pod whose policy this is. */
  endpoint: string;
  /** 'all': some plain L3/L4 entry allows the flow in this direction. */
  rules: readonly HttpRule[] | 'all';
}

export interface FlowParty {
  ip: string;
  port: number;
  identity: number;
  /** 'ns/name' when the address is a known pod. */
  pod?: string;
}

/** What the proxy needs to know about one redirected connection. */
export interface FlowChecks {
  src: FlowParty;
  /** The original destination (the backend, after Service translation). */
  dst: FlowParty;
  /** Empty: no rule covers the flow any more (the policy changed since the
   *  datapath redirected it); the proxy refuses its requests (fail closed). */
  checks: DirectionCheck[];
}
