#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * The `portcullis` command.
 *
 *   portcullis start --config FILE   run a relay (logs: JSON lines on stdout)
 *   portcullis check --config FILE   validate a config; print the plugins and the hook order
 *   portcullis demo                  a relay on a built-in config, with its own next hop, to try
 *   portcullis dkim keygen D S       a DKIM key (0600) and the TXT record to publish
 *   portcullis plugin new NAME       scaffold a plugin package (TypeScript, schema, test, README)
 *   portcullis PLUGIN CMD --config F a command a plugin of F offers (`recipients check ADDRESS`)
 *
 * Exit codes: see exit-codes.ts (0 ok, 1 failure, 64 usage, 78 config error).
 */
import path from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { cliVersion } from './cli-package.js';
import { exit, ExitCode } from './exit-codes.js';
import type { Logger } from './load-relay.js';
import { importFromProject, MissingPackageError } from './project-import.js';

// The relay's modules load only when a command runs: --help, --version and usage errors answer at once.
// The public face plus the internals the CLI runs the relay with (spool, queue, control socket, log file).
const core = async () => ({ ...(await import('@portcullis/core')), ...(await import('@portcullis/core/internal')) });
const relayModules = async () => ({ ...(await import('./load-relay.js')), ...(await import('./run-relay.js')) });

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) throw new InvalidArgumentError('expected a port number from 0 to 65535.');
  return n;
}

/** Exits with `code` once the logger (if any) has written everything. */
async function finish(code: number, log?: Logger): Promise<void> {
  if (log) exit(log, code);
  else process.exit(code);
}

// `--version` names every component (core, CLI, plugins, smtp-server, Node), not just the CLI:
// answered before commander, which only knows one version string. `--config F` lists F's plugins.
if (process.argv[2] === '--version' || process.argv[2] === '-V') {
  const i = process.argv.findIndex((a) => a === '--config' || a === '-c');
  const { versionReport, formatVersion } = await import('./ops-commands.js');
  try {
    process.stdout.write(formatVersion(await versionReport(i > 0 ? process.argv[i + 1] : undefined)));
    process.exit(ExitCode.ok);
  } catch (err) {
    process.stderr.write(`portcullis --version: ${(err as Error).message}\n`);
    process.exit(ExitCode.failure);
  }
}

const program = new Command('portcullis')
  .description('Portcullis: an SMTP relay for the network edge, composed of plugins listed in one config file.')
  .version(cliVersion(), '-V, --version', 'print the versions of the CLI, core, plugins, smtp-server and Node')
  .exitOverride()
  .showHelpAfterError('(run portcullis --help for usage)');

program
  .command('start')
  .description('run a relay from a config file; SIGTERM or SIGINT stops it gracefully')
  .requiredOption('-c, --config <file>', 'config file (YAML, or JSON if it ends in .json)')
  .addOption(new Option('--log-level <level>', 'override log.level from the config').choices(LOG_LEVELS))
  .action(async (opts: { config: string; logLevel?: string }) => {
    // workers: 1 runs the relay here; more makes this process the primary of N workers (run-relay.ts).
    await (await import('./run-relay.js')).startCommand(opts);
  });

program
  .command('check')
  .description('validate a config file and its plugins (opens no port); print the plugins and the hook order')
  .requiredOption('-c, --config <file>', 'config file (YAML, or JSON if it ends in .json)')
  .option('--json', 'print the report as JSON')
  .option('--connect', 'let plugins contact their backends too (an LDAP bind, ...); exit 1 when one fails')
  .action(async (opts: { config: string; json?: boolean; connect?: boolean }) => {
    const [{ ConfigError, createLogger }, { loadRelay, reportConfigError }, { checkReport, formatCheckReport, pluginChecks }] = await Promise.all([core(), relayModules(), import('./check-command.js')]);
    // Plugins may log while they set up: to stderr, so that stdout is only the report.
    const log = createLogger('warn', 2);
    try {
      const loaded = await loadRelay(opts.config, () => log);
      const checks = await pluginChecks(loaded.relay, !!opts.connect);
      const report = { ...checkReport(loaded), ...(checks.length ? { pluginChecks: checks } : {}) };
      await loaded.relay.driver.close();
      process.stdout.write(opts.json ? JSON.stringify(report, null, 2) + '\n' : formatCheckReport(report));
      await finish(checks.every((c) => c.ok) ? ExitCode.ok : ExitCode.failure, log);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      reportConfigError(err, 'the configuration is not valid');
      await finish(ExitCode.config, log);
    }
  });

program
  .command('demo')
  .description(`run a demo relay on a built-in config: mail for @demo.example goes to a next hop inside the demo, which prints it`)
  .option('-p, --port <port>', 'relay port on 127.0.0.1', port, 2525)
  .option('--nexthop-port <port>', 'port of the demo next hop on 127.0.0.1', port, 2526)
  .option('--spool <dir>', 'spool folder (kept between runs: undelivered messages survive a restart)', './var/demo-spool')
  .addOption(new Option('--log-level <level>', 'level of the JSON logs on stderr').choices(LOG_LEVELS).default('info'))
  .action(async (opts: { port: number; nexthopPort: number; spool: string; logLevel: string }) => {
    await (await import('./demo-command.js')).runDemo(opts);
  });

function durationArg(value: string): number {
  const n = parseDurationLoose(value);
  if (n === undefined) throw new InvalidArgumentError('expected a duration such as 30m, 4h or 2d.');
  return n;
}
function parseDurationLoose(v: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(v.trim());
  if (!m) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's') as 'ms'];
  return Number(m[1]) * unit;
}

/** Runs an admin command: config errors exit 78, other failures 1, with one line on stderr. */
async function admin(name: string, work: () => Promise<number>): Promise<void> {
  const { ConfigError } = await core();
  try {
    process.exit(await work());
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(err.message + '\n');
      process.exit(ExitCode.config);
    }
    process.stderr.write(`portcullis ${name}: ${(err as Error).message}\n`);
    process.exit(ExitCode.failure);
  }
}

program
  .command('queue')
  .description('inspect and steer the queue, of a running relay (over its control socket) or, when it is stopped, in the spool itself (under the spool lock): list | summary | show ID | flush [ID...] | hold | release | delete | bounce [ID...]')
  .argument('<action>', 'list, summary, show, flush, hold, release, delete or bounce')
  .argument('[ids...]', 'message ids (from list); instead of ids, select with the options below')
  .requiredOption('-c, --config <file>', 'the config file of the relay (its spool folder holds the queue and the control socket)')
  .option('--from <address>', 'select by sender (`*` matches anything, `<>` is the null sender)')
  .option('--to <address>', 'select by a pending recipient (`*` matches anything)')
  .option('--domain <domain>', 'select by a pending recipient domain')
  .option('--older-than <age>', 'select messages older than this (30m, 4h, 2d)', durationArg)
  .option('--younger-than <age>', 'select messages younger than this', durationArg)
  .addOption(new Option('--state <state>', 'select by state').choices(['due', 'deferred', 'held', 'sending']))
  .option('--held', 'flush: release held messages too (by default flush leaves them held)')
  .option('--all', 'hold/release/delete/bounce every message (without ids or a selection)')
  .option('--by-sender', 'summary: rows by sender domain instead of recipient domain')
  .option('--json', 'print JSON')
  .action(async (action: string, ids: string[], opts: import('./queue-command.js').QueueCommandOptions) => {
    const actions = ['list', 'summary', 'show', 'flush', 'hold', 'release', 'delete', 'bounce'];
    if (!actions.includes(action)) {
      process.stderr.write(`portcullis queue: unknown action "${action}"; one of ${actions.join(', ')}\n`);
      process.exit(ExitCode.usage);
    }
    await admin(`queue ${action}`, async () => (await import('./queue-command.js')).queueCommand(action, ids, opts));
  });

program
  .command('status')
  .description('what the relay is doing: listeners, readiness (each plugin too), queue depth, oldest message, disk free, versions; exit 0 when running and ready')
  .requiredOption('-c, --config <file>', 'the config file of the relay')
  .option('--json', 'print JSON')
  .action(async (opts: { config: string; json?: boolean }) => {
    await admin('status', async () => (await import('./ops-commands.js')).statusCommand(opts));
  });

program
  .command('reload')
  .description('make the running relay re-read its config file (as SIGHUP does): validated first; on any error the running config stays')
  .requiredOption('-c, --config <file>', 'the config file of the relay')
  .action(async (opts: { config: string }) => {
    await admin('reload', async () => (await import('./ops-commands.js')).reloadCommand(opts));
  });

program
  .command('version')
  .description('versions of the CLI, core, the plugins (those of --config, else the stock ones), smtp-server and Node')
  .option('-c, --config <file>', 'list the plugins this config loads')
  .option('--json', 'print JSON')
  .action(async (opts: { config?: string; json?: boolean }) => {
    await admin('version', async () => {
      const { versionReport, formatVersion } = await import('./ops-commands.js');
      const v = await versionReport(opts.config);
      process.stdout.write(opts.json ? JSON.stringify(v, null, 2) + '\n' : formatVersion(v));
      return 0;
    });
  });

program
  .command('quarantine')
  .description('what the attachments and clamav plugins quarantined: list | show ID | release ID | delete ID... | rescan [ID...] | purge')
  .argument('<action>', 'list, show, release, delete, rescan or purge')
  .argument('[ids...]', 'quarantine ids (from list)')
  .requiredOption('-c, --config <file>', 'the config file (its attachments and clamav entries name the quarantine folders)')
  .option('--older-than <age>', 'purge: remove items older than this (default: each plugin\'s quarantine retention)', durationArg)
  .option('--json', 'print JSON')
  .action(async (action: string, ids: string[], opts: { config: string; json?: boolean; olderThan?: number }) => {
    const actions = ['list', 'show', 'release', 'delete', 'rescan', 'purge'];
    if (!actions.includes(action)) {
      process.stderr.write(`portcullis quarantine: unknown action "${action}"; one of ${actions.join(', ')}\n`);
      process.exit(ExitCode.usage);
    }
    await admin(`quarantine ${action}`, async () => (await import('./quarantine-command.js')).quarantineCommand(action, ids, opts));
  });

program
  .command('passwd')
  .description('add or replace a user in a users file (scrypt hash); the password is read from standard input')
  .argument('<file>', 'users file (created with mode 0600 if missing)')
  .argument('<user>', 'login name, e.g. alice@example.com')
  .option('--domains <list>', 'comma-separated domains this user may send from (with relay-policy senderMustMatch)')
  .action(async (file: string, user: string, opts: { domains?: string }) => {
    try {
      await (await import('./admin-commands.js')).passwd(file, user, opts);
    } catch (err) {
      process.stderr.write(`portcullis passwd: ${(err as Error).message}\n`);
      process.exit(ExitCode.failure);
    }
  });

program
  .command('tls')
  .description('TLS helpers')
  .command('selfsigned')
  .description('write key.pem and a self-signed cert.pem, for trying STARTTLS and port 465 out')
  .option('--out <dir>', 'folder to write into', './tls')
  .option('--name <host>', 'host name in the certificate', 'localhost')
  .option('--days <n>', 'validity in days', '365')
  .action(async (opts: { out: string; name: string; days: string }) => {
    try {
      await (await import('./admin-commands.js')).tlsSelfSigned(opts);
    } catch (err) {
      process.stderr.write(`portcullis tls selfsigned: ${(err as Error).message}\n`);
      process.exit(ExitCode.failure);
    }
  });

program.addCommand((await import('./dkim-command.js')).dkimCommand());

program
  .command('plugin')
  .description('plugin development')
  .command('new')
  .description('scaffold a plugin package: TypeScript, an options schema, a test on the test kit, a README with its options table')
  .argument('<name>', 'npm package name, e.g. portcullis-plugin-sender-block or @acme/greylist')
  .option('--dir <dir>', 'folder to create (default: the name without scope)')
  .action(async (name: string, opts: { dir?: string }) => {
    try {
      const { dir, files } = (await import('./plugin-new.js')).scaffoldPlugin(name, opts);
      process.stdout.write(`created ${dir}\n${files.map((f) => `  ${f}`).join('\n')}\n\nnext: cd ${path.relative(process.cwd(), dir) || '.'} && npm install && npm test\n`);
    } catch (err) {
      process.stderr.write(`portcullis plugin new: ${(err as Error).message}\n`);
      process.exit(ExitCode.failure);
    }
  });

// The open-relay self-test (package @portcullis/relay-test): `portcullis relay-test HOST:PORT --domain D`.
// Loaded from the user's project like the plugins; without it the command says how to get it.
try {
  const { relayTestCommand } = await importFromProject<typeof import('@portcullis/relay-test')>('@portcullis/relay-test', 'portcullis relay-test');
  program.addCommand(relayTestCommand('relay-test', (code) => process.exit(code)));
} catch (err) {
  if (!(err instanceof MissingPackageError)) throw err;
  program
    .command('relay-test')
    .description('open-relay self-test (needs @portcullis/relay-test)')
    .allowUnknownOption()
    .argument('[args...]')
    .action(() => {
      process.stderr.write(`portcullis: ${err.message}\n`);
      process.exit(ExitCode.failure);
    });
}

program.addHelpText('after', '\nPlugin commands:\n  portcullis <plugin> <command> [args...] --config FILE   a command a plugin of FILE offers,\n      e.g. portcullis recipients check alice@example.com --config relay.yaml (portcullis <plugin> --config FILE lists them)');

// `portcullis <plugin> <command> ...`: a word that is no command of ours names a plugin of --config.
const first = process.argv[2];
if (first && !first.startsWith('-') && first !== 'help' && !program.commands.some((c) => c.name() === first || c.aliases().includes(first)) && process.argv.some((a) => a === '--config' || a === '-c' || a.startsWith('--config='))) {
  const { ConfigError } = await core();
  try {
    process.exit(await (await import('./plugin-command.js')).runPluginCommand(process.argv.slice(2)));
  } catch (err) {
    if (err instanceof ConfigError) {
      (await import('./load-relay.js')).reportConfigError(err, 'the command did not run');
      process.exit(ExitCode.config);
    }
    process.stderr.write(`portcullis ${first}: ${(err as Error).message}\n`);
    process.exit(ExitCode.failure);
  }
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? ExitCode.ok : ExitCode.usage);
  process.stderr.write(`portcullis: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(ExitCode.failure);
}
