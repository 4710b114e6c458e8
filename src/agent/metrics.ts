// Prometheus metrics of one agent, in a registry of its own (no global state).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  syncDuration: Histogram<'kind'>;
  changeLatency: Histogram;
  k8sEvents: Counter<'resource' | 'type'>;
  k8sWatchRestarts: Counter<'resource' | 'reason'>;
  reconcileErrors: Counter<'map'>;
  objectProblems: Counter<'kind'>;
  objectProblemsPresent: Gauge<'kind'>;
  mapEntries: Gauge<'map'>;
  mapCapacity: Gauge<'map'>;
  mapPressure: Gauge<'map'>;
  drops: Counter<'reason'> | Gauge<'reason'>;
  ready: Gauge;
  devices: Gauge<'kind'>;
  ctGcDeleted: Counter;
  ctGcDuration: Histogram;
  ctGcInterval: Gauge;
}

export interface MetricsSources {
  /** entries and capacity per map, read when scraped */
  maps(): { map: string; entries: number; capacity: number }[];
  /** per-reason drop counters from the datapath, read when scraped */
  drops(): { reason: string; packets: number }[];
}

export function createMetrics(sources?: MetricsSources): Metrics {
  const registry = new Registry();
  // process_resident_memory_bytes, nodejs_heap_size_used_bytes, event loop lag...
  collectDefaultMetrics({ register: registry, prefix: 'hypha_' });
  const mapEntries = new Gauge({ name: 'hypha_map_entries', help: 'Entries in a BPF map (as last programmed)', labelNames: ['map'], registers: [registry] });
  const mapCapacity = new Gauge({ name: 'hypha_map_capacity', help: 'max_entries of a BPF map', labelNames: ['map'], registers: [registry] });
  const mapPressure = new Gauge({
    name: 'hypha_map_pressure', help: 'Fill ratio of a BPF map (entries / capacity)', labelNames: ['map'], registers: [registry],
    collect() {
      if (!sources) return;
      for (const m of sources.maps()) {
        mapEntries.set({ map: m.map }, m.entries);
        mapCapacity.set({ map: m.map }, m.capacity);
        this.set({ map: m.map }, m.capacity > 0 ? m.entries / m.capacity : 0);
      }
    },
  });
  const drops = new Gauge({
    name: 'hypha_datapath_drops_total', help: 'Packets the datapath dropped or rejected, by reason (counter kept in a BPF map)',
    labelNames: ['reason'], registers: [registry],
    collect() {
      if (!sources) return;
      for (const d of sources.drops()) this.set({ reason: d.reason }, d.packets);
    },
  });
  return {
    registry,
    syncDuration: new Histogram({
      name: 'hypha_lb_sync_duration_seconds', help: 'Time to program a batch of Service changes into the maps',
      labelNames: ['kind'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry],
    }),
    changeLatency: new Histogram({
      name: 'hypha_lb_change_latency_seconds', help: 'From a Service or EndpointSlice change reaching the agent to the maps holding it (not what the first list brought)',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [registry],
    }),
    k8sEvents: new Counter({ name: 'hypha_k8s_watch_events_total', help: 'Watch events received', labelNames: ['resource', 'type'], registers: [registry] }),
    k8sWatchRestarts: new Counter({
      name: 'hypha_k8s_watch_restarts_total', help: 'Watches restarted (closed by the server, error, silent, 410 Gone, resync)',
      labelNames: ['resource', 'reason'], registers: [registry],
    }),
    reconcileErrors: new Counter({ name: 'hypha_reconcile_errors_total', help: 'Failed map writes (retried)', labelNames: ['map'], registers: [registry] }),
    objectProblems: new Counter({ name: 'hypha_object_problems_total', help: 'Objects (or parts of them) refused as invalid, or not programmed (counted when the problem appears)', labelNames: ['kind'], registers: [registry] }),
    objectProblemsPresent: new Gauge({ name: 'hypha_object_problems', help: 'Problems of objects present now (hypha service list --problems), by kind of object', labelNames: ['kind'], registers: [registry] }),
    mapEntries,
    mapCapacity,
    mapPressure,
    drops,
    ready: new Gauge({ name: 'hypha_ready', help: '1 once the first sync is programmed', registers: [registry] }),
    devices: new Gauge({ name: 'hypha_devices_attached', help: 'Devices with Hypha programs attached', labelNames: ['kind'], registers: [registry] }),
    ctGcDeleted: new Counter({ name: 'hypha_conntrack_gc_deleted_total', help: 'Timed-out conntrack entries deleted by garbage collection', registers: [registry] }),
    ctGcDuration: new Histogram({
      name: 'hypha_conntrack_gc_duration_seconds', help: 'Time one conntrack garbage-collection pass takes (in the kernel)',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5], registers: [registry],
    }),
    ctGcInterval: new Gauge({ name: 'hypha_conntrack_gc_interval_seconds', help: 'Pause before the next conntrack garbage-collection pass', registers: [registry] }),
  };
}
