import { readFileSync } from 'node:fs';
import path from 'node:path';
import { coreVersion } from '../api/core-version.js';
import type { RelayConfig } from '../config/schema.js';
import type { LogFileDestination } from '../telemetry/log-destination.js';
import type { PluginDriver } from '../plugins/driver.js';
import type { DiskGuard } from '../spool/disk-guard.js';
import { freeBytes } from '../spool/disk-space.js';
import type { Spool } from '../spool/spool.js';
import type { DeliveryQueue } from '../delivery/queue.js';
import type { SharedState } from '../services/shared-state.js';
import { runReadiness, type ReadinessCheck, type ReadinessReport } from './readiness.js';

/** What readiness and status read from the relay. */
export interface StatusSource {
  readonly config: RelayConfig;
  readonly driver: PluginDriver;
  readonly spool: Spool;
  readonly diskGuard: DiskGuard;
  readonly queue: DeliveryQueue;
  readonly sharedState: SharedState;
  readonly stopping: boolean;
  openListeners(): number;
  readiness(): Promise<ReadinessReport>;
  addresses(): Array<{ name: string; host: string; port: number }>;
  adminAddress(): { host: string; port: number } | undefined;
  sessionCount(): number;
}

/**
 * Readiness (`/readyz`, `portcullis status`): listeners open, spool writable, disk guard clear,
 * and each plugin's own `ready()` (clamd reachable, ...). All run at once, each bounded.
 */
export function relayReadiness(r: StatusSource): Promise<ReadinessReport> {
  const checks: ReadinessCheck[] = [
    {
      name: 'listeners',
      check: () => {
        const open = r.openListeners();
        return { ready: !r.stopping && open === r.config.listen.length && open > 0, detail: r.stopping ? 'stopping' : `${open} of ${r.config.listen.length} open` };
      },
    },
    { name: 'spool', check: () => r.spool.probeWritable().then(() => ({ ready: true }), (err: Error) => ({ ready: false, detail: `not writable: ${err.message}` })) },
    {
      name: 'disk',
      check: async () => {
        const s = await r.diskGuard.status();
        return { ready: !s.tripped, detail: `${s.free} bytes free on the spool's file system${s.tripped ? `, below ${s.minFree}: MAIL FROM gets 452 4.3.1` : ''}` };
      },
    },
    ...r.driver.plugins.filter((p) => typeof p.instance.ready === 'function').map((p) => ({ name: `plugin:${p.instance.name}`, check: () => p.instance.ready!() })),
  ];
  return runReadiness(checks, r.config.admin.readyTimeout);
}

/** What `portcullis status` shows. */
export async function relayStatus(r: StatusSource, configFile: string, logFile: LogFileDestination | undefined): Promise<Record<string, unknown>> {
  const q = r.queue.stats();
  return {
    pid: process.pid,
    uptimeSeconds: Math.round(process.uptime()),
    versions: { core: coreVersion, node: process.versions.node, smtpServer: await installedVersion('smtp-server') },
    configFile,
    listeners: r.addresses(),
    admin: r.adminAddress(),
    plugins: r.driver.plugins.map((p) => ({ name: p.instance.name, use: p.source })),
    readiness: await r.readiness(),
    sharedState: r.sharedState.status(),
    queue: { ...q, oldestAgeSeconds: q.oldestReceivedAt ? Math.round((Date.now() - q.oldestReceivedAt) / 1000) : 0 },
    diskFreeBytes: { spool: await freeBytes(r.spool.dir).catch(() => null), ...(logFile ? { log: await freeBytes(logFile.dir).catch(() => null) } : {}) },
    log: logFile ? { file: logFile.file, droppedLines: logFile.dropped, writeErrors: logFile.writeErrors } : { file: 'stdout' },
    sessions: r.sessionCount(),
  };
}

/** The version of an installed dependency (for `portcullis status` and `--version`). */
export async function installedVersion(pkg: string): Promise<string | undefined> {
  try {
    const { createRequire } = await import('node:module');
    const req = createRequire(import.meta.url);
    let dir = path.dirname(req.resolve(pkg));
    for (; dir !== path.dirname(dir); dir = path.dirname(dir)) {
      try {
        const json = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
        if (json.name === pkg) return json.version;
      } catch {
        /* keep looking upwards */
      }
    }
  } catch {
    /* not installed */
  }
  return undefined;
}
