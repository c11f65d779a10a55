import { createLogger, type PluginCommand, type Relay } from '@portcullis/core';
import { ExitCode } from './exit-codes.js';
import { loadRelay } from './load-relay.js';

/**
 * `portcullis <plugin> <command> [args...] --config FILE`: runs a command a plugin offers
 * (`commands` in what its `setup` returns), on the plugin as FILE sets it up. No port is opened;
 * the plugin's state (its cache on Redis, say) is the running relay's when they share a store.
 * The generic extension point: the CLI knows no plugin's commands in advance.
 */
export async function runPluginCommand(argv: readonly string[]): Promise<number> {
  const rest = [...argv];
  const i = rest.findIndex((a) => a === '--config' || a === '-c' || a.startsWith('--config='));
  const config = i < 0 ? undefined : rest[i]!.startsWith('--config=') ? rest[i]!.slice('--config='.length) : rest[i + 1];
  if (i >= 0) rest.splice(i, rest[i]!.startsWith('--config=') ? 1 : 2);
  const [plugin, name, ...args] = rest;
  if (!config || !plugin) {
    process.stderr.write('usage: portcullis <plugin> <command> [args...] --config FILE\n');
    return ExitCode.usage;
  }
  // Plugins log to stderr while they set up: stdout is the command's output only.
  const log = createLogger('warn', 2);
  const { relay } = await loadRelay(config, () => log);
  try {
    const found = relay.driver.plugins.find((p) => p.instance.name === plugin);
    const commands = found?.instance.commands ?? {};
    if (!found || !Object.keys(commands).length) {
      const offering = pluginsWithCommands(relay);
      process.stderr.write(`portcullis: unknown command "${plugin}"${found ? `; plugin ${plugin} offers no commands` : `; no plugin named ${plugin} in ${config}`}${offering.length ? ` (plugins with commands: ${offering.join(', ')})` : ''}; see portcullis --help\n`);
      return ExitCode.usage;
    }
    const command = name ? commands[name] : undefined;
    if (!command || args.includes('--help') || args.includes('-h')) {
      process.stderr.write(usage(plugin, commands) + (name && !command ? `portcullis ${plugin}: unknown command "${name}"\n` : ''));
      return command ? ExitCode.ok : ExitCode.usage;
    }
    return await command.run(args, { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) });
  } finally {
    await relay.driver.close();
  }
}

function pluginsWithCommands(relay: Relay): string[] {
  return relay.driver.plugins.filter((p) => Object.keys(p.instance.commands ?? {}).length).map((p) => p.instance.name);
}

function usage(plugin: string, commands: Readonly<Record<string, PluginCommand>>): string {
  const lines = Object.entries(commands).map(([n, c]) => `  portcullis ${plugin} ${n}${c.usage ? ` ${c.usage}` : ''} --config FILE\n      ${c.description}`);
  return `Commands of the ${plugin} plugin:\n${lines.join('\n')}\n`;
}
