import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { optionsTable, replaceOptionsTable, z } from '@portcullis/core';

/**
 * `portcullis plugin new NAME`: a plugin package that builds (tsc) and passes its test as
 * generated: TypeScript sources, an options schema with descriptions, one test on the test kit
 * (socket-free, plus the conformance suite), and a README whose options table is generated from
 * the schema (`npm run docs`; `npm test` fails when they disagree).
 */
export function scaffoldPlugin(name: string, opts: { dir?: string } = {}): { dir: string; files: string[] } {
  const pkgName = name.trim();
  if (!/^(@[a-z0-9][a-z0-9._-]*\/)?[a-z0-9][a-z0-9._-]*$/.test(pkgName)) {
    throw new Error(`"${name}" is not an npm package name (lower case, digits, - . _; optionally @scope/)`);
  }
  // The plugin's own name (in logs and `use:`): the package name without scope or prefixes.
  const pluginName = pkgName.replace(/^@[^/]+\//, '').replace(/^portcullis-plugin-/, '').replace(/[^a-z0-9-]/g, '-');
  const dir = path.resolve(opts.dir ?? pkgName.replace(/^@[^/]+\//, ''));
  if (existsSync(dir) && readdirSync(dir).length) throw new Error(`${dir} exists and is not empty: choose another --dir`);
  const version = (createRequire(import.meta.url)('@portcullis/core/package.json') as { version: string }).version;
  const range = `^${version}`;

  const files: Record<string, string> = {
    'package.json': JSON.stringify(
      {
        name: pkgName,
        version: '0.1.0',
        description: `Portcullis plugin ${pluginName}: refuses mail from listed senders (edit src/index.ts)`,
        type: 'module',
        license: 'MIT',
        exports: { '.': { types: './dist/index.d.ts', default: './dist/index.js' } },
        types: './dist/index.d.ts',
        files: ['dist', 'src', 'README.md'],
        engines: { node: '>=20.19' },
        scripts: {
          build: 'tsc -p tsconfig.json',
          docs: 'npm run build && node scripts/options-docs.mjs',
          test: 'npm run build && tsc -p tsconfig.test.json && mocha && node scripts/options-docs.mjs --check',
        },
        peerDependencies: { '@portcullis/core': range },
        devDependencies: {
          '@portcullis/core': range,
          '@portcullis/testkit': range,
          '@types/mocha': '^10.0.10',
          '@types/node': '^22.0.0',
          mocha: '^11.7.0',
          typescript: '~5.9.3',
        },
      },
      null,
      2,
    ) + '\n',
    'tsconfig.json': JSON.stringify(
      {
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          lib: ['ES2023'],
          types: ['node'],
          strict: true,
          declaration: true,
          sourceMap: true,
          skipLibCheck: true,
          rootDir: 'src',
          outDir: 'dist',
        },
        include: ['src'],
      },
      null,
      2,
    ) + '\n',
    'tsconfig.test.json': JSON.stringify(
      {
        extends: './tsconfig.json',
        compilerOptions: { rootDir: '.', outDir: '.test-build', declaration: false, types: ['node', 'mocha'] },
        include: ['src', 'test'],
      },
      null,
      2,
    ) + '\n',
    '.mocharc.json': JSON.stringify({ spec: '.test-build/test/**/*.test.js', timeout: 20000, exit: true }, null, 2) + '\n',
    '.gitignore': 'node_modules/\ndist/\n.test-build/\n',
    'src/index.ts': `import { definePlugin, reject, z } from '@portcullis/core';

/** The plugin's options (the config's \`with:\` block). Each \`.describe()\` is the README's text. */
export const options = z.strictObject({
  senders: z.array(z.string().min(1)).default([]).describe('Envelope senders refused at MAIL FROM: full addresses, or \`@domain\` for a whole domain (case-insensitive).'),
  reply: z.string().min(1).default('Sender refused').describe('Text of the 550 5.7.1 reply.'),
});

/**
 * ${pluginName}: refuses mail from the listed senders at MAIL FROM with 550 5.7.1.
 * Every other hook is yours to add: see the hook reference (docs/hooks.md in the Portcullis repository).
 */
export default definePlugin({
  name: '${pluginName}',
  options,
  setup: (opts) => {
    const listed = new Set(opts.senders.map((s) => s.toLowerCase()));
    return {
      mail: (_txn, from) => {
        const address = from.address.toLowerCase();
        return listed.has(address) || listed.has(\`@\${from.domain}\`) ? reject(550, '5.7.1', opts.reply) : undefined;
      },
    };
  },
});
`,
    'test/index.test.ts': `import assert from 'node:assert/strict';
import { accept, definePlugin } from '@portcullis/core';
import { callHook, describePluginConformance, inject } from '@portcullis/testkit';
import plugin from '../src/index.js';

const options = { senders: ['spammer@example.net', '@junk.example'] };

describe('${pluginName}', () => {
  it('refuses a listed sender at MAIL FROM with 550 5.7.1', async () => {
    const r = await callHook(plugin, 'mail', { options, mailFrom: 'Spammer@example.net' });
    assert.deepEqual(r.reply, { code: 550, enhanced: '5.7.1', text: 'Sender refused' });
  });

  it('refuses a whole listed domain and lets other senders through, over SMTP in memory', async () => {
    const acceptAll = definePlugin({ name: 'accept-all', setup: () => ({ rcpt: () => accept() }) });
    const plugins = [{ use: plugin, with: options }, acceptAll];
    const junk = await inject({ plugins, transcript: ['EHLO client.test', 'MAIL FROM:<anyone@junk.example>'] });
    assert.equal(junk.replies[2]!.code, 550);
    const fine = await inject({ plugins, mail: { from: 'friend@example.org', to: 'user@example.com', message: 'Subject: hi\\r\\n\\r\\nhello\\r\\n' } });
    assert.equal(fine.replies.find((x) => x.command === '<message>')!.code, 250);
  });
});

// The contract every Portcullis plugin keeps (options with key paths, no leaks, failures never accepted).
describePluginConformance(plugin, { options, invalid: [{ options: { senders: [''] }, path: 'senders[0]' }] });
`,
    'scripts/options-docs.mjs': `// Writes README.md's options table from the plugin's schema; --check fails when they differ.
import { readFileSync, writeFileSync } from 'node:fs';
import { optionsTable, replaceOptionsTable } from '@portcullis/core';
import plugin from '../dist/index.js';

const readme = readFileSync('README.md', 'utf8');
const next = replaceOptionsTable(readme, optionsTable(plugin.options));
if (next === undefined) throw new Error('README.md has no <!-- options:begin --> ... <!-- options:end --> markers');
if (process.argv.includes('--check')) {
  if (next !== readme) {
    console.error('README.md: the options table differs from the schema; run npm run docs');
    process.exit(1);
  }
} else writeFileSync('README.md', next);
`,
    'README.md': `# ${pkgName}

A [Portcullis](https://www.npmjs.com/package/portcullis) plugin: refuses mail from listed senders at
MAIL FROM with \`550 5.7.1\`.

## Use

\`\`\`sh
npm install ${pkgName}
\`\`\`

\`\`\`yaml
plugins:
  - use: ${pkgName}
    with: { senders: [spammer@example.net, "@junk.example"] }
\`\`\`

## Options

<!-- options:begin -->
<!-- options:end -->

## Develop

\`npm test\` builds, runs the tests (\`@portcullis/testkit\`: no network needed) and checks that this
README's options table matches the schema; \`npm run docs\` rewrites the table after a schema change.
Hooks and verdicts: the Portcullis hook reference.
`,
  };
  // The README's table comes from the same schema the generated source declares.
  const schema = z.strictObject({
    senders: z.array(z.string().min(1)).default([]).describe('Envelope senders refused at MAIL FROM: full addresses, or `@domain` for a whole domain (case-insensitive).'),
    reply: z.string().min(1).default('Sender refused').describe('Text of the 550 5.7.1 reply.'),
  });
  files['README.md'] = replaceOptionsTable(files['README.md']!, optionsTable(schema))!;

  for (const [rel, text] of Object.entries(files)) {
    const file = path.join(dir, rel);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, text);
  }
  return { dir, files: Object.keys(files) };
}
