#!/usr/bin/env node
// Build a JavaScript meshhost processor into a component:
//
//   node sdk/js/build.mjs app.js -o plugin.wasm [--wit DIR] [--weval BIN | --interpreted]
//
// `app.js` is an ES module exporting `init` and `processRecord` (or `process`); it may import
// 'meshhost-sdk' (this directory's meshhost.js), its own modules and pure-JS npm packages. The
// build bundles them with rolldown into one module whose `processor` export is the WIT
// interface, then runs componentize-js ({sourcePath, witPath, worldName}) on it.
//
// The component's JavaScript is compiled ahead of time (componentize-js `enableAot`, weval):
// StarlingMonkey has no JIT inside WebAssembly, and AOT runs a processor's per-record code about
// 1.5× faster than the interpreter. It needs weval 0.5.0: `--weval BIN`, else the one the
// @bytecodealliance/weval package downloads (from GitHub) on first use. When neither is to be
// had, the build says so and makes an interpreted component; `--interpreted` asks for one.
//
// Needs `npm install` in sdk/js once (scripts/setup.sh does it).

import { mkdtemp, readdir, copyFile, writeFile, rm, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const SDK_DIR = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(SDK_DIR, '..', '..');

// The worlds the component targets: the processor with only the `log` import, or with `log` and
// `state` when the processor uses the SDK's `state`. (The host takes a component that imports
// `state` for a stateful one, so a processor that keeps no state must not import it.)
const SDK_WORLD = 'meshhost-sdk-plugin';
const SDK_STATEFUL_WORLD = 'meshhost-sdk-stateful-plugin';
// A string only the SDK's `state` object holds: the bundle keeps it when the app uses `state`
// (rolldown drops unused exports).
const STATE_MARKER = 'meshhost-sdk-state';
// The weval the pinned componentize-js was made with (its AOT cache is for this version).
const WEVAL_VERSION = '0.5.0';
// The version of the meshhost WIT package (wit/processor.wit) this SDK speaks.
const WIT_VERSION = '0.3.0';
const SDK_WORLD_WIT = `package meshhost:processor@${WIT_VERSION};

/// What the JavaScript SDK builds: a processor that may log.
world ${SDK_WORLD} {
    import log;
    export processor;
}

/// What the JavaScript SDK builds for a processor that uses \`state\`.
world ${SDK_STATEFUL_WORLD} {
    import log;
    import state;
    export processor;
}
`;

/** One module: the app, the SDK and their imports; the WIT imports stay external. */
async function bundle(rolldown, entry, source) {
  await writeFile(entry, source);
  const bundled = await rolldown({
    input: entry,
    external: [/^meshhost:/, /^wasi:/],
    platform: 'neutral',
    resolve: { alias: { 'meshhost-sdk': join(SDK_DIR, 'meshhost.js') } },
    logLevel: 'warn',
  });
  const { output: chunks } = await bundled.generate({ format: 'esm', codeSplitting: false });
  await bundled.close();
  return chunks[0].code;
}

function usage(message) {
  if (message) console.error(`meshhost build: ${message}`);
  console.error('usage: node sdk/js/build.mjs APP.js [-o plugin.wasm] [--wit DIR] [--weval BIN | --interpreted] [-q]');
  process.exit(2);
}

function findWit(explicit) {
  for (const candidate of [explicit, process.env.MESHHOST_WIT, join(REPO, 'wit')]) {
    if (candidate && existsSync(join(candidate, 'processor.wit'))) return resolve(candidate);
  }
  usage('cannot find the meshhost WIT directory; pass --wit DIR or set MESHHOST_WIT');
}

async function importTool(name) {
  try {
    return await import(name);
  } catch (error) {
    console.error(`meshhost build: cannot load ${name} (${error.code ?? error.message}); run \`npm install\` in ${SDK_DIR} (scripts/setup.sh does)`);
    process.exit(1);
  }
}

/** The weval binary for an AOT build: `explicit`, else the @bytecodealliance/weval package's
 * (downloaded on first use); `null`, with a warning, when there is none. */
async function findWeval(explicit) {
  if (explicit) {
    if (!existsSync(explicit)) usage(`--weval ${explicit} does not exist`);
    return resolve(explicit);
  }
  try {
    const { default: getWeval } = await import('@bytecodealliance/weval');
    return await getWeval();
  } catch (error) {
    console.error(
      `meshhost build: warning: no weval ${WEVAL_VERSION} (${error.message}), so this component interprets its JavaScript ` +
        `(about 1.5× slower per record); pass --weval BIN, e.g. after \`cargo install weval --version ${WEVAL_VERSION} --locked\``,
    );
    return null;
  }
}

/** Build `app` into the component `output`; returns its size in bytes. */
export async function build(app, output, { wit, weval, interpreted = false, quiet = false } = {}) {
  const started = Date.now();
  app = resolve(app);
  output = resolve(output);
  if (!existsSync(app)) usage(`${app} does not exist`);
  const witDir = findWit(wit);
  const { rolldown } = await importTool('rolldown');
  const { componentize } = await importTool('@bytecodealliance/componentize-js');

  const work = await mkdtemp(join(tmpdir(), 'meshhost-js-build-'));
  try {
    // The WIT package plus the SDK's world.
    const witStage = join(work, 'wit');
    await mkdir(witStage);
    for (const name of await readdir(witDir)) {
      if (name.endsWith('.wit')) await copyFile(join(witDir, name), join(witStage, name));
    }
    await writeFile(join(witStage, 'zz-meshhost-sdk.wit'), SDK_WORLD_WIT);

    const entry = join(work, 'entry.js');
    const head = `import * as app from ${JSON.stringify(app)};
import { createProcessor, setStateBackend } from 'meshhost-sdk';
import { log } from 'meshhost:processor/log@${WIT_VERSION}';
`;
    const tail = 'export const processor = createProcessor(app, log);\n';
    let code = await bundle(rolldown, entry, head + tail);
    const stateful = code.includes(STATE_MARKER);
    if (stateful) {
      code = await bundle(
        rolldown,
        entry,
        `${head}import * as hostState from 'meshhost:processor/state@${WIT_VERSION}';
setStateBackend(hostState);
${tail}`,
      );
    }
    const source = join(work, 'processor.js');
    await writeFile(source, code);

    const wevalBin = interpreted ? null : await findWeval(weval);
    const { component } = await componentize({
      sourcePath: source,
      witPath: witStage,
      worldName: stateful ? SDK_STATEFUL_WORLD : SDK_WORLD,
      // No wasi:http: the host links WASI without it.
      disableFeatures: ['http', 'fetch-event'],
      ...(wevalBin ? { enableAot: true, wevalBin } : {}),
    });
    await mkdir(dirname(output), { recursive: true });
    await writeFile(output, component);
    if (!quiet) {
      const how = wevalBin ? 'compiled ahead of time' : 'interpreted';
      console.log(`built ${output} (${(component.length / 1e6).toFixed(1)} MB, ${how}) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
    return component.length;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        output: { type: 'string', short: 'o', default: 'plugin.wasm' },
        wit: { type: 'string' },
        weval: { type: 'string' },
        interpreted: { type: 'boolean' },
        quiet: { type: 'boolean', short: 'q' },
      },
    });
  } catch (error) {
    usage(error.message);
  }
  if (parsed.positionals.length !== 1) usage('give one app file');
  try {
    await build(parsed.positionals[0], parsed.values.output, parsed.values);
  } catch (error) {
    console.error(`meshhost build: ${error.stack ?? error}`);
    process.exit(1);
  }
}
