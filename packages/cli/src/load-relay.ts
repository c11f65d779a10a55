import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { ConfigError, createLogger, loadConfigFile, parseConfig, Relay, type LoadedConfig, type LogFileDestination, type RelayConfig } from '@portcullis/core';
import { validatePluginEntries } from '@portcullis/core/internal';
import { cliPackageDir } from './cli-package.js';
import { pluginPath } from './project-import.js';

export type Logger = ReturnType<typeof createLogger>;

/**
 * A worker of the worker mode builds its relay from the config its primary validated (`raw`, the
 * file as parsed then), turned into the worker's own (`config`: its spool shard); the primary serves
 * /metrics and /readyz, so the worker opens no admin listener.
 */
export interface WorkerLoad {
  readonly raw: unknown;
  readonly config: (config: RelayConfig, dir: string) => RelayConfig;
  /** The IPC channel to the primary: shared state (counters, cache, connection slots) is held there for every worker. */
  readonly stateTransport: NonNullable<Parameters<typeof Relay.create>[0]['stateTransport']>;
  /** Listeners whose connections the primary accepts and hands over (index → port; see RelayOptions.handed). */
  readonly handed?: ReadonlyMap<number, number>;
}

/**
 * Reads and validates the config file, then creates the relay: plugins are imported, their options
 * validated and their `setup` run. No port is open yet. Every problem of the run is in one
 * ConfigError naming the file and the key path: the file's own keys, missing TLS files and every
 * plugin's options (when the file's own keys are wrong, the plugins' options are still checked).
 */
export async function loadRelay(
  file: string,
  logger: (config: RelayConfig, dir: string) => Logger | Promise<{ log: Logger; logFile?: LogFileDestination }>,
  worker?: WorkerLoad,
): Promise<{ loaded: LoadedConfig; relay: Relay }> {
  let loaded: LoadedConfig;
  try {
    loaded = worker ? { file: path.resolve(file), dir: path.dirname(path.resolve(file)), config: worker.config(parseConfig(worker.raw, path.resolve(file)), path.dirname(path.resolve(file))), raw: worker.raw } : loadConfigFile(file);
  } catch (err) {
    if (!(err instanceof ConfigError) || err.raw === undefined) throw err;
    const raw = err.raw as { plugins?: unknown };
    const more = await validatePluginEntries(raw.plugins, { file: err.file, configDir: path.dirname(err.file), resolveFrom: [process.cwd(), ...pluginPath(), cliPackageDir] });
    throw new ConfigError(err.file, [...err.problems, ...more]);
  }
  const missing = filesMissing(loaded);
  let relay: Relay;
  try {
    const made = await logger(loaded.config, loaded.dir);
    const { log, logFile } = 'log' in made && 'level' in made.log ? (made as { log: Logger; logFile?: LogFileDestination }) : { log: made as Logger, logFile: undefined };
    relay = await Relay.create({ config: loaded.config, configFile: loaded.file, logger: log, logFile, resolveFrom: [process.cwd(), ...pluginPath(), cliPackageDir], ...(worker ? { adminServer: false, stateTransport: worker.stateTransport, handed: worker.handed } : {}) });
  } catch (err) {
    if (err instanceof ConfigError && missing.length) throw new ConfigError(loaded.file, [...missing, ...err.problems]);
    throw err;
  }
  if (missing.length) {
    await relay.driver.close();
    throw new ConfigError(loaded.file, missing);
  }
  return { loaded, relay };
}

/** The TLS key and certificate are read when the listeners start; a missing file is a config error, found now. */
function filesMissing({ dir, config }: LoadedConfig): Array<{ path: string; message: string }> {
  const problems: Array<{ path: string; message: string }> = [];
  for (const key of ['key', 'cert'] as const) {
    const value = config.tls?.[key];
    if (!value) continue;
    const abs = path.resolve(dir, value);
    try {
      accessSync(abs, constants.R_OK);
    } catch (err) {
      problems.push({ path: `tls.${key}`, message: `expected a readable PEM file, cannot read ${abs} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` });
    }
  }
  const tokenFile = config.admin.tokenFile;
  if (tokenFile) {
    const abs = path.resolve(dir, tokenFile);
    try {
      accessSync(abs, constants.R_OK);
    } catch (err) {
      problems.push({ path: 'admin.tokenFile', message: `expected a readable file holding the token, cannot read ${abs} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` });
    }
  }
  return problems;
}

// Apart from this file so that the worker mode's primary prints config errors without loading the relay.
export { reportConfigError } from './config-report.js';
