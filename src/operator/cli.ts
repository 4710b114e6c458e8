// `hypha operator --config <file>`: runs the operator in the foreground.
// Exit codes: 0 after SIGTERM/SIGINT (the Lease handed back), 1 when it
// fails to start or loses leadership (the Deployment restarts it, which
// makes it a candidate again), 2 for a bad configuration.
import { pino } from 'pino';
import { isOperatorConfigError, loadOperatorConfig, type OperatorConfig } from './config.ts';
import { Operator } from './operator.ts';

export async function runOperator(opts: { config: string }): Promise<void> {
  let cfg: OperatorConfig;
  try {
    cfg = loadOperatorConfig(opts.config);
  } catch (err) {
    if (isOperatorConfigError(err)) {
      process.stderr.write(`hypha operator: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = pino({ level: cfg.log.level, base: { component: 'operator', identity: cfg.leaderElection.identity } });
  let exiting = false;
  const exit = (code: number, release: boolean): void => {
    if (exiting) return;
    exiting = true;
    operator.stop({ release }).then(() => process.exit(code), (err: Error) => {
      log.error({ err: err.message }, 'stop failed');
      process.exit(code || 1);
    });
  };
  const operator = new Operator(cfg, {
    log,
    onLostLeadership: (reason) => {
      log.fatal({ reason }, 'leadership lost: stopping and exiting');
      exit(1, false);
    },
  });
  process.on('SIGTERM', () => {
    log.info({ signal: 'SIGTERM' }, 'stopping');
    exit(0, true);
  });
  process.on('SIGINT', () => {
    log.info({ signal: 'SIGINT' }, 'stopping');
    exit(0, true);
  });
  try {
    await operator.start();
  } catch (err) {
    log.fatal({ err: (err as Error).message, code: (err as { code?: string }).code }, 'operator failed to start');
    exit(1, false);
    return;
  }
  log.info({
    ready: true, mode: cfg.ipam.mode, pool: cfg.ipam.clusterPool?.cidrs ?? null, maskSize: cfg.ipam.clusterPool?.maskSize ?? null, port: operator.port,
    lease: `${cfg.leaderElection.namespace}/${cfg.leaderElection.name}`,
  }, 'operator ready');
}
