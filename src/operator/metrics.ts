// Prometheus metrics of the operator, in a registry of its own.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface OperatorMetrics {
  registry: Registry;
  isLeader: Gauge;
  ipamCidrs: Gauge<'state'>;
  ipamExhausted: Gauge;
  ipamWaiting: Gauge;
  ipamRefused: Gauge;
  writes: Counter<'kind' | 'result'>;
  passes: Counter<'result'>;
  passDuration: Histogram;
  objects: Gauge<'resource'>;
  objectProblems: Counter<'kind'>;
  k8sEvents: Counter<'resource' | 'type'>;
  k8sWatchRestarts: Counter<'resource' | 'reason'>;
}

export function createOperatorMetrics(): OperatorMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'hypha_operator_' });
  const r = [registry];
  return {
    registry,
    isLeader: new Gauge({ name: 'hypha_operator_is_leader', help: '1 while this operator holds the leader Lease and acts', registers: r }),
    ipamCidrs: new Gauge({ name: 'hypha_operator_ipam_cidrs', help: 'Per-node CIDRs of the cluster pool, free or used (as of the last pass)', labelNames: ['state'], registers: r }),
    ipamExhausted: new Gauge({ name: 'hypha_operator_ipam_exhausted', help: '1 while a node waits for a pod CIDR the cluster pool does not have', registers: r }),
    ipamWaiting: new Gauge({ name: 'hypha_operator_ipam_nodes_waiting', help: 'Nodes waiting for a pod CIDR (pool exhausted)', registers: r }),
    ipamRefused: new Gauge({ name: 'hypha_operator_ipam_claims_refused', help: 'Pod CIDR claims refused (overlapping, outside the pool, invalid)', registers: r }),
    writes: new Counter({ name: 'hypha_operator_writes_total', help: 'Writes to HyphaNodes, by kind (create, update, status, delete) and result (ok, conflict, error)', labelNames: ['kind', 'result'], registers: r }),
    passes: new Counter({ name: 'hypha_operator_reconcile_passes_total', help: 'Reconcile passes, by result (ok: every write done; retry: some failed)', labelNames: ['result'], registers: r }),
    passDuration: new Histogram({
      name: 'hypha_operator_reconcile_duration_seconds', help: 'Time of one reconcile pass (plan and writes)',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30], registers: r,
    }),
    objects: new Gauge({ name: 'hypha_operator_objects', help: 'Objects the operator knows, by resource', labelNames: ['resource'], registers: r }),
    objectProblems: new Counter({ name: 'hypha_operator_object_problems_total', help: 'Fields of objects refused as invalid', labelNames: ['kind'], registers: r }),
    k8sEvents: new Counter({ name: 'hypha_operator_watch_events_total', help: 'Watch events received', labelNames: ['resource', 'type'], registers: r }),
    k8sWatchRestarts: new Counter({ name: 'hypha_operator_watch_restarts_total', help: 'Watches restarted', labelNames: ['resource', 'reason'], registers: r }),
  };
}
