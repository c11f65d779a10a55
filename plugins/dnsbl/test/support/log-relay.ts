import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createLogger, parseConfig, Relay, type PluginDefinition, type RelayConfigInput } from '@portcullis/core';

/** A relay in this process whose log lines (JSON) the test can read. */
export async function startLoggedRelay(config: Partial<RelayConfigInput>, builtins: Record<string, PluginDefinition>) {
  const spoolDir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-dnsbl-'));
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const relay = await Relay.create({ config: parseConfig({ hostname: 'relay.test', ...config, spool: { dir: spoolDir } }), builtins, logger: createLogger('info', sink) });
  await relay.start();
  return {
    relay,
    lines,
    port: (i = 0) => relay.addresses()[i]!.port,
    async stop() {
      await relay.stop();
      rmSync(spoolDir, { recursive: true, force: true });
    },
  };
}
