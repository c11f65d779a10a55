import path from 'node:path';
import { cliVersion } from './cli-package.js';
import { describePluginSource } from './plugin-source.js';

/** The stock plugins the CLI ships with (found by short name). */
const STOCK = ['relay-policy', 'attachments', 'clamav', 'mx-router'];

/**
 * `portcullis --version`: the CLI, core, every plugin (those the config loads with `--config`,
 * else the stock ones installed with the CLI), smtp-server and Node.
 */
export async function versionReport(configFile?: string): Promise<{ cli: string; core?: string; smtpServer?: string; node: string; plugins: Array<{ use: string; version?: string; file?: string }> }> {
  const core = { ...(await import('@portcullis/core')), ...(await import('@portcullis/core/internal')) };
  let uses = STOCK;
  let dir = process.cwd();
  if (configFile) {
    const loaded = core.loadConfigFile(configFile);
    uses = loaded.config.plugins.filter((p) => p.enabled).map((p) => p.use);
    dir = loaded.dir;
  }
  return {
    cli: cliVersion(),
    core: core.coreVersion,
    smtpServer: await core.installedVersion('smtp-server'),
    node: process.versions.node,
    plugins: uses.map((use) => ({ use, ...describePluginSource(use, dir) })),
  };
}

export function formatVersion(v: Awaited<ReturnType<typeof versionReport>>): string {
  const lines = [`portcullis ${v.cli}`, `  @portcullis/cli   ${v.cli}`, `  @portcullis/core  ${v.core ?? '?'}`];
  for (const p of v.plugins) lines.push(`  plugin ${p.use}  ${p.version ?? (p.file ? `(local file ${p.file})` : 'not found')}`);
  lines.push(`  smtp-server       ${v.smtpServer ?? '?'}`, `  node              ${v.node}`);
  return lines.join('\n') + '\n';
}

async function control(configFile: string) {
  const core = { ...(await import('@portcullis/core')), ...(await import('@portcullis/core/internal')) };
  const { config, dir } = core.loadConfigFile(configFile);
  const spoolDir = path.resolve(dir, config.spool.dir);
  return { core, config, spoolDir, socket: path.join(spoolDir, 'control.sock') };
}

/** `portcullis reload`: asks the running relay to re-read its config (like SIGHUP), and says how it went. */
export async function reloadCommand(opts: { config: string }): Promise<number> {
  const { core, socket } = await control(opts.config);
  const res = await core.controlRequest(socket, { cmd: 'reload' }, 60_000);
  if (!res.ok) {
    process.stderr.write(`portcullis reload: the running configuration is kept:\n${res.error}\n`);
    return 1;
  }
  const plugins = (res.result as { plugins: string[] }).plugins;
  process.stdout.write(`configuration reloaded; new sessions use plugins: ${plugins.join(', ') || '(none)'}\n`);
  return 0;
}

const bytes = (n: number | null | undefined) => (n == null ? '?' : n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(1)} GiB` : n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${Math.round(n / 1024)} KiB`);

/**
 * `portcullis status`: listeners, readiness (each plugin's too), queue depth, oldest message, disk
 * free, versions. With the relay stopped it says so and reads the queue from the spool. Exit 0
 * when running and ready, 1 otherwise.
 */
export async function statusCommand(opts: { config: string; json?: boolean }): Promise<number> {
  const { core, config, spoolDir, socket } = await control(opts.config);
  let status: Record<string, unknown> | undefined;
  try {
    const res = await core.controlRequest(socket, { cmd: 'status' }, 15_000);
    if (!res.ok) throw new Error(res.error);
    status = res.result as Record<string, unknown>;
  } catch (err) {
    if (!/ENOENT|ECONNREFUSED/.test((err as Error).message)) throw err;
  }
  if (!status) {
    const { openQueue } = await import('./queue-command.js');
    const q = await openQueue(opts.config, { readOnly: true });
    const list = (await q.request({ cmd: 'list' })) as { ok: true; result: Array<{ receivedAt: number; hold: boolean; nextAttemptAt: number; size: number }> };
    await q.close();
    const now = Date.now();
    const rows = list.result;
    const offline = {
      running: false,
      spool: spoolDir,
      queue: {
        messages: rows.length,
        held: rows.filter((r) => r.hold).length,
        deferred: rows.filter((r) => !r.hold && r.nextAttemptAt > now).length,
        due: rows.filter((r) => !r.hold && r.nextAttemptAt <= now).length,
        bytes: rows.reduce((a, r) => a + r.size, 0),
        oldestAgeSeconds: rows.length ? Math.round((now - Math.min(...rows.map((r) => r.receivedAt))) / 1000) : 0,
      },
      diskFreeBytes: { spool: await core.freeBytes(spoolDir).catch(() => null) },
      versions: await versionReport(opts.config),
      hostname: config.hostname,
    };
    if (opts.json) process.stdout.write(JSON.stringify(offline, null, 2) + '\n');
    else {
      const q2 = offline.queue;
      process.stdout.write(
        [
          `relay: NOT RUNNING (no answer on ${socket})`,
          `queue: ${q2.messages} message(s) in the spool: ${q2.due} due, ${q2.deferred} deferred, ${q2.held} held; ${bytes(q2.bytes)}; oldest ${q2.oldestAgeSeconds}s`,
          `disk free (spool): ${bytes(offline.diskFreeBytes.spool)}`,
        ].join('\n') + '\n',
      );
    }
    return 1;
  }
  const s = status as {
    pid: number;
    uptimeSeconds: number;
    versions: { core: string; node: string; smtpServer?: string };
    listeners: Array<{ name: string; host: string; port: number }>;
    admin?: { host: string; port: number };
    plugins: Array<{ name: string; use: string }>;
    readiness: { ready: boolean; checks: Array<{ name: string; ready: boolean; detail?: string }> };
    queue: { messages: number; due: number; deferred: number; held: number; sending: number; bytes: number; oldestAgeSeconds: number };
    diskFreeBytes: { spool: number | null; log?: number | null };
    log: { file: string; droppedLines?: number; writeErrors?: number };
    sessions: number;
    workers?: { configured: number; running: number; each: Array<{ worker: number; pid: number; sessions: number; queue: { messages: number } }> };
  };
  if (opts.json) {
    process.stdout.write(JSON.stringify({ running: true, ...s }, null, 2) + '\n');
    return s.readiness.ready ? 0 : 1;
  }
  const lines = [
    `relay: running (pid ${s.pid}, up ${s.uptimeSeconds}s), ${s.readiness.ready ? 'READY' : 'NOT READY'}`,
    `versions: core ${s.versions.core}, smtp-server ${s.versions.smtpServer ?? '?'}, node ${s.versions.node}`,
    `listeners: ${s.listeners.map((l) => `${l.name} (${l.host}:${l.port})`).join(', ')}${s.admin ? `; admin http://${s.admin.host}:${s.admin.port}/` : ''}`,
    `sessions open: ${s.sessions}`,
    ...(s.workers ? [`workers: ${s.workers.running} of ${s.workers.configured} running; ${s.workers.each.map((w) => `worker ${w.worker} (pid ${w.pid}): ${w.sessions} sessions, ${w.queue.messages} queued`).join('; ')}`] : []),
    'readiness:',
    ...s.readiness.checks.map((c) => `  ${c.ready ? 'ok  ' : 'FAIL'} ${c.name}${c.detail ? `: ${c.detail}` : ''}`),
    `plugins: ${s.plugins.map((p) => p.name).join(', ') || '(none)'}`,
    `queue: ${s.queue.messages} message(s): ${s.queue.due} due, ${s.queue.deferred} deferred, ${s.queue.held} held, ${s.queue.sending} sending; ${bytes(s.queue.bytes)}; oldest ${s.queue.oldestAgeSeconds}s`,
    `disk free: spool ${bytes(s.diskFreeBytes.spool)}${s.diskFreeBytes.log !== undefined ? `, log ${bytes(s.diskFreeBytes.log)}` : ''}`,
    `log: ${s.log.file}${s.log.droppedLines !== undefined ? ` (${s.log.droppedLines} lines dropped, ${s.log.writeErrors} write errors)` : ''}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  return s.readiness.ready ? 0 : 1;
}
