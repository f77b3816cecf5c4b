// Browser benchmark (figures, not a test): first paint of Explore with 1,000 objects
// and in-browser inference of 32 objects, in headless Chromium against `cosmicai serve`.
//   node tests/e2e/bench.mjs          (COSMICAI_BIN, E2E_DATA as for explorer.mjs)
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '../..');
const bin = process.env.COSMICAI_BIN ?? join(root, 'target/release/cosmicai');
const data = process.env.E2E_DATA ?? mkdtempSync(join(tmpdir(), 'cosmicai-bench-'));
const server = spawn(bin, ['serve', '--addr', '127.0.0.1:0', '--data-dir', data, '--assets', join(root, 'assets'),
  '--frontend', join(root, 'dist')], { stdio: ['ignore', 'pipe', 'ignore'] });
process.on('exit', () => server.kill());
const base = await new Promise((ok) => {
  let out = '';
  server.stdout.on('data', (d) => { out += d; const m = out.match(/listening on (http:\/\/\S+)/); if (m) ok(m[1]); });
});
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const figures = { first_paint_1000_ms: [], inference_32_ms: [] };
for (let run = 0; run < 5; run++) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const t0 = Date.now();
  await page.goto(`${base}/#/?per_page=1000`);
  await page.waitForFunction(() => document.querySelectorAll('.card').length === 1000, null, { timeout: 60000 });
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
  figures.first_paint_1000_ms.push(Date.now() - t0);
  await page.goto(`${base}/#/predict`);
  await page.waitForSelector('.timing', { timeout: 60000 });
  const text = await page.textContent('.timing');
  figures.inference_32_ms.push(Number(text.match(/([\d.]+) ms/)[1]));
  const gpu = await page.evaluate(async () => !!(navigator.gpu && await navigator.gpu.requestAdapter()));
  figures.webgpu_adapter = gpu;
  await page.close();
}
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
console.log(JSON.stringify({
  first_paint_1000_ms_median: median(figures.first_paint_1000_ms), first_paint_1000_ms: figures.first_paint_1000_ms,
  inference_32_ms_median: median(figures.inference_32_ms), inference_32_ms: figures.inference_32_ms,
  backend: 'burn ndarray (CPU, wasm)', webgpu_adapter_present: figures.webgpu_adapter,
}));
await browser.close();
