#!/usr/bin/env node
// The build's second step: the console's static files (src/admin/console/) go next to the compiled
// module that serves them (dist/src/admin/console/); tsc copies only what it compiles.
import { cpSync, mkdirSync } from 'node:fs';

mkdirSync('dist/src/admin/console', { recursive: true });
cpSync('src/admin/console', 'dist/src/admin/console', { recursive: true });
