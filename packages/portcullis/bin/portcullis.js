#!/usr/bin/env node
// The CLI, with this package's folder as one more place to find plugins: the stock plugins are this
// package's dependencies, so `use: relay-policy` resolves even when the package manager does not
// hoist them next to the CLI.
import { fileURLToPath } from 'node:url';
import path from 'node:path';

process.env.PORTCULLIS_PLUGIN_PATH = [path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..'), process.env.PORTCULLIS_PLUGIN_PATH].filter(Boolean).join(path.delimiter);
await import('@portcullis/cli/main');
