import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger, parseConfig, Relay, type PluginDefinition, type RelayConfigInput } from '@portcullis/core';

export interface TestRelayOptions {
  /** Config as in the YAML file; `listen` defaults to one plain listener on 127.0.0.1, any port. */
  readonly config?: Partial<RelayConfigInput>;
  readonly builtins?: Readonly<Record<string, PluginDefinition>>;
  /** Spool folder; default a fresh temp folder, removed by `stop()`. */
  readonly spoolDir?: string;
  /** Folder relative plugin paths resolve against. */
  readonly configFile?: string;
  /** A logger to use instead of the default (tests that read the log lines pass their own). */
  readonly logger?: ReturnType<typeof createLogger>;
}

export interface TestRelay {
  readonly relay: Relay;
  /** Port of the first listener. */
  readonly port: number;
  readonly spoolDir: string;
  stop(): Promise<void>;
}

/**
 * Starts a whole relay in this process on loopback, with a temp spool. Logs go nowhere unless
 * PORTCULLIS_TEST_LOG is set (then to stderr, at that level).
 */
export async function startTestRelay(opts: TestRelayOptions = {}): Promise<TestRelay> {
  const spoolDir = opts.spoolDir ?? mkdtempSync(path.join(os.tmpdir(), 'portcullis-spool-'));
  const config = parseConfig({
    hostname: 'relay.test',
    listen: [{ host: '127.0.0.1', port: 0, greetingDelay: 0 }],
    ...opts.config,
    spool: { dir: spoolDir, ...(opts.config?.spool ?? {}) },
  });
  const level = process.env['PORTCULLIS_TEST_LOG'];
  const logger = opts.logger ?? createLogger(level || 'silent', level ? 2 : undefined);
  const relay = await Relay.create({ config, builtins: opts.builtins, logger, configFile: opts.configFile });
  await relay.start();
  return {
    relay,
    port: relay.addresses()[0]!.port,
    spoolDir,
    async stop() {
      await relay.stop();
      if (!opts.spoolDir) rmSync(spoolDir, { recursive: true, force: true });
    },
  };
}
