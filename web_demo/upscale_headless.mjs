#!/usr/bin/env node
// Run the browser demo in headless Chromium on one image: the page's own code path (file
// input, mode, Upscale, Download PNG), and write the result and its stats (the fields of
// `gdq run --stats`, plus threads, ep, total_s, tile_bits).
//
//   node web_demo/upscale_headless.mjs INPUT OUTPUT [--model DIR] [--bits auto|4|5|6|8|LEVEL] [--budget B]
//        [--precision int8|fp32] [--stats S.json] [--threads N] [--ep wasm|webgpu]
//        [--bench R] [--screenshot S.png] [--viewport WxH] [--chromium PATH] [--url URL]
//
// --bench R: after a warm-up (every graph of the mode created and run once), R timed runs;
// the stats get ms_per_tile of the fastest (and bench_runs_s). --url: a page already served
// (e.g. by `gdq web`; --model is then the server's) instead of this script's own server. Exit code 1 and the page's
// message on stderr when the page refuses the input or the model.
import { writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { resolve, dirname, basename } from 'node:path';
import { serve, DEFAULT_MODEL } from './serve.mjs';

function usage(msg) {
  if (msg) console.error(`error: ${msg}`);
  console.error('usage: upscale_headless.mjs INPUT OUTPUT [--model DIR] [--bits auto|4|5|6|8|LEVEL] [--budget B] [--precision int8|fp32] '
    + '[--stats S.json] [--threads N] [--ep wasm|webgpu] [--bench R] [--screenshot S.png] [--viewport WxH] [--chromium PATH] [--url URL]');
  process.exit(2);
}

const args = process.argv.slice(2);
const pos = [], opt = { model: DEFAULT_MODEL, bits: 'auto', precision: 'int8', threads: '1', ep: 'wasm', viewport: '1280x900' };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '-h' || a === '--help') usage();
  if (a.startsWith('--')) {
    const k = a.slice(2);
    if (!['model', 'bits', 'budget', 'precision', 'stats', 'threads', 'ep', 'bench', 'screenshot', 'viewport', 'chromium', 'url'].includes(k)) usage(`unknown option ${a}`);
    if (i + 1 >= args.length) usage(`${a} needs a value`);
    opt[k] = args[++i];
  } else pos.push(a);
}
if (pos.length !== 2) usage('give INPUT and OUTPUT');
const [input, output] = pos.map((p) => resolve(p));
if (!existsSync(input)) usage(`input '${input}' does not exist`);
if (!['int8', 'fp32'].includes(opt.precision)) usage(`--precision ${opt.precision}: valid int8, fp32`);
if (opt.precision === 'fp32' && opt.bits !== 'auto') usage('--bits picks an integer graph and --precision fp32 the fp32 one: give one of them');
// a bit-width names its full-depth level (a6); a level name (a6k4) is itself
const mode = opt.precision === 'fp32' ? 'fp32' : /^\d+$/.test(opt.bits) ? `a${opt.bits}` : opt.bits;
const [vw, vh] = opt.viewport.split('x').map(Number);
const chromium = opt.chromium || process.env.CHROMIUM || ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find(existsSync);
if (!chromium) usage('no Chromium found (apt-get install chromium, or --chromium PATH)');

let pw;
try {
  pw = await import('playwright-core');
} catch {
  usage('playwright-core is not installed: npm ci --prefix web_demo');
}

const srv = opt.url ? { url: opt.url, close: async () => {} } : await serve(resolve(opt.model));
const launchArgs = ['--no-sandbox', '--disable-dev-shm-usage'];
if (opt.ep === 'webgpu') launchArgs.push('--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-angle=swiftshader');
const browser = await pw.chromium.launch({ executablePath: chromium, headless: true, args: launchArgs });
let code = 0;
const logs = [];
try {
  const ctx = await browser.newContext({ viewport: { width: vw, height: vh }, acceptDownloads: true });
  const page = await ctx.newPage();
  logs.length = 0;
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  const state = (...s) => page.waitForFunction((want) => want.includes(document.body.dataset.state), s, { timeout: 0, polling: 100 });
  const failIfError = async () => {
    const st = await page.evaluate(() => document.body.dataset.state);
    if (st === 'error' || st === 'model-error') {
      const msg = await page.evaluate(() => document.getElementById('message').textContent);
      throw Object.assign(new Error(msg), { pageMessage: true });
    }
  };
  await page.goto(`${srv.url}?threads=${opt.threads}&ep=${opt.ep}`);
  await state('ready', 'error', 'model-error');
  await failIfError();
  await page.setInputFiles('#file', input);
  await state('image', 'error');
  await failIfError();
  const modes = await page.$$eval('#mode option', (os) => os.map((o) => o.value));
  if (!modes.includes(mode)) throw Object.assign(new Error(`mode '${mode}' is not offered by this model (valid: ${modes.join(', ')})`), { pageMessage: true });
  await page.selectOption('#mode', mode);
  if (opt.budget !== undefined) {
    if (await page.$eval('#budget-label', (e) => e.hidden)) {
      throw Object.assign(new Error('--budget needs a model with a level gate'), { pageMessage: true });
    }
    await page.$eval('#budget', (e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }, opt.budget);
  }
  const runOnce = async () => {
    await page.click('#run');
    await state('done', 'error');
    await failIfError();
    return page.evaluate(() => window.gdq.stats);
  };
  let stats;
  if (opt.bench) {
    await page.evaluate((m) => window.gdq.warm(m), mode);
    const runs = [];
    for (let r = 0; r < Number(opt.bench); r++) {
      await page.evaluate(() => { document.body.dataset.state = 'image'; });
      runs.push(await runOnce());
    }
    stats = runs.reduce((a, b) => (b.total_s < a.total_s ? b : a));
    stats.bench_runs_s = runs.map((r) => r.total_s);
    stats.ms_per_tile = Math.round((stats.total_s * 1000 / stats.tiles) * 100) / 100;
  } else {
    stats = await runOnce();
  }
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  mkdirSync(dirname(output), { recursive: true });
  await download.saveAs(output);
  stats.input = input;
  stats.output = output;
  stats.crossOriginIsolated = await page.evaluate(() => window.crossOriginIsolated);
  stats.chromium = browser.version();
  if (opt.stats) writeFileSync(resolve(opt.stats), JSON.stringify(stats, null, 2));
  if (opt.screenshot) {
    await page.check('#show-bitmap');
    await page.screenshot({ path: resolve(opt.screenshot), fullPage: true });
  }
  const tpb = Object.keys(stats.tiles_per_bit).length ? `, FAB ${stats.fab.toFixed(2)}, tiles per bit ${JSON.stringify(stats.tiles_per_bit)}` : '';
  console.log(`${basename(input)} -> ${output} (${stats.tiles} tiles${tpb}; ${stats.total_s.toFixed(2)} s)`);
  if (process.env.GDQ_DEBUG) console.error(logs.join('\n'));
} catch (e) {
  console.error(`error: ${e.message}`);
  if (!e.pageMessage || process.env.GDQ_DEBUG) console.error(logs.join('\n'));
  code = 1;
} finally {
  await browser.close();
  await srv.close();
}
process.exit(code);
