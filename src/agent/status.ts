// The agent's status document: what GET /status returns and `hypha status`
// prints. Declared once, here, for both (as JSON: dates are ISO strings).
import type { InformerPhase } from '../k8s/informer.ts';
import type { Problem } from '../services/problems.ts';
import type { NotServedEntry } from './lb-sync.ts';
import type { ProblemKindSummary } from './object-problems.ts';
import type { PodsStatus } from './pods.ts';
import type { RoutingStatus } from './routing.ts';

export interface InformerStatusJson {
  resource: string;
  phase: InformerPhase;
  synced: boolean;
  resourceVersion: string;
  objects: number;
  lastEventAt: string | null;
  lastError: string | null;
  watchRestarts: number;
  relists: number;
}

export interface MapUsage {
  map: string;
  entries: number;
  capacity: number;
}

export interface AgentStatus {
  node: { name: string; addresses: string[] };
  ready: boolean;
  source:
    | { kind: 'files'; paths: string[]; reads: number; lastReadAt: string | null }
    | { kind: 'kubernetes'; connected: boolean; informers: InformerStatusJson[] };
  lastSync: string | null;
  lastFullSync: string | null;
  lastError: string | null;
  services: number;
  /** Frontends Services ask for that this node does not program, and why
   *  (another Service owns the address, IPv6-only, no node address for
   *  NodePorts, ExternalIP outside services.externalIPs.allowedCIDRs). */
  notServed: NotServedEntry[];
  /** Every problem of an object present now (a bad field, a Service that
   *  does not fit the maps): `hypha service list --problems`. */
  problems: Problem[];
  /** The same by kind, most objects first: what `hypha status` prints. */
  problemKinds: ProblemKindSummary[];
  /** Services with a problem of which nothing is programmed. */
  notProgrammed: number;
  maps: MapUsage[];
  conntrackGc: { deleted: number; entries: number; ms: number; at: string; nextSeconds: number } | null;
  devices: { external: string | null; externalMode: string | null; pods: string[] };
  /** The CNI side: null when the agent does not serve the CNI plugin. */
  pods: PodsStatus | null;
  routing: RoutingStatus | null;
  pinRoot: string;
  /** The L7 proxy (policy on): whether it listens, where, and why not. */
  l7Proxy?: { listening: boolean; address: string; lastError: string | null } | null;
}
