// Browser benchmark (figures, not a test): first paint of Explore with 1,000 objects
// (and where a first visit's time goes),
// the sky map's frame time with 100,000 points while panning, and in-browser inference of 32 objects on the CPU (wasm) and WebGPU paths (first batch,
// which compiles the shaders, and warm batches), in headless Chromium against `cosmicai serve`.
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
const figures = { first_paint_1000_ms: [], inference_32_ms: [], webgpu_first_32_ms: [], webgpu_warm_32_ms: [] };
// One batch of 32 on a fresh page with `backend`; then `again` more batches on that page.
const infer = async (page, backend, again) => {
  await page.goto(`${base}/#/predict?backend=${backend}`);
  await page.waitForSelector('.timing, .error', { timeout: 120000 });
  if (await page.locator('.error').count()) return { error: await page.textContent('.error') };
  const ms = [Number(await page.getAttribute('.timing', 'data-ms'))];
  const ran = await page.getAttribute('.timing', 'data-backend');
  for (let i = 1; i <= again; i++) {
    await page.click('button.again');
    await page.waitForFunction((n) => document.querySelectorAll('table.batches tr').length === n + 1, i + 1);
    ms.push(Number(await page.getAttribute('.timing', 'data-ms')));
  }
  return { ms, ran, text: await page.textContent('.timing') };
};
// Explore with 1,000 objects on `page`, from navigation to the frame after the cards;
// with the page's own timings of where that went (ms from navigation): the wasm's
// arrival, the objects request, the cards entering the DOM, and the long tasks.
const explore1000 = async (page) => {
  await page.addInitScript(() => {
    window.__long = [];
    new PerformanceObserver((l) => l.getEntries().forEach((e) => window.__long.push([Math.round(e.startTime), Math.round(e.duration)]))).observe({ type: 'longtask', buffered: true });
    new MutationObserver(() => {
      if (!window.__cards && document.querySelectorAll('.card').length === 1000) {
        window.__cards = Math.round(performance.now());
        requestAnimationFrame(() => { window.__painted = Math.round(performance.now()); });
      }
    }).observe(document, { childList: true, subtree: true });
  });
  const t0 = Date.now();
  await page.goto(`${base}/#/?per_page=1000`);
  await page.waitForFunction(() => document.querySelectorAll('.card').length === 1000, null, { timeout: 60000 });
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
  const ms = Date.now() - t0;
  const where = await page.evaluate(() => {
    const at = (re, key) => Math.round(performance.getEntriesByType('resource').find((e) => re.test(e.name))?.[key] ?? -1);
    return {
      wasm_end: at(/_bg\.wasm/, 'responseEnd'), objects_start: at(/\/api\/objects\?/, 'startTime'),
      objects_end: at(/\/api\/objects\?/, 'responseEnd'), cards_in_dom: window.__cards, painted: window.__painted,
      objects_requests: performance.getEntriesByType('resource').filter((e) => /\/api\/objects\?/.test(e.name)).length,
      long_tasks: window.__long,
    };
  });
  return { ms, where };
};
figures.return_visit_1000_ms = [];
figures.first_visit_where = [];
// The same two as the page's own clock reads them: navigation start to the frame
// after the cards (how browsers time a first paint), without the driver's overhead.
figures.first_paint_1000_from_navigation_ms = [];
figures.return_visit_1000_from_navigation_ms = [];
for (let run = 0; run < 5; run++) {
  // A first visit (a new browser context: nothing cached), then a return visit in
  // the same context (the content-named wasm from the cache, compiled code too).
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  let page = await context.newPage();
  const first = await explore1000(page);
  figures.first_paint_1000_ms.push(first.ms);
  figures.first_visit_where.push(first.where);
  figures.first_paint_1000_from_navigation_ms.push(first.where.painted);
  await page.close();
  page = await context.newPage();
  const again = await explore1000(page);
  figures.return_visit_1000_ms.push(again.ms);
  figures.return_visit_1000_from_navigation_ms.push(again.where.painted);
  await context.close();
  page = await browser.newPage();
  const cpu = await infer(page, 'cpu', 0);
  figures.inference_32_ms.push(cpu.ms[0]);
  await page.close();
  page = await browser.newPage();
  const gpu = await infer(page, 'webgpu', 3);
  if (gpu.error) {
    figures.webgpu = gpu.error;
  } else {
    figures.webgpu = gpu.text;
    figures.webgpu_first_32_ms.push(gpu.ms[0]);
    figures.webgpu_warm_32_ms.push(...gpu.ms.slice(1));
  }
  await page.close();
}
// The sky map with 100,000 points (the catalog's, repeated), panned with the arrow keys:
// each key redraws a frame; the page keeps the median time of the last 120.
{
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${base}/#/sky?bench=100000`);
  await page.waitForFunction(() => Number(document.querySelector('.sky-stats')?.dataset.frames) >= 1, null, { timeout: 60000 });
  figures.sky_points = Number(await page.getAttribute('canvas.sky', 'data-points'));
  await page.focus('canvas.sky');
  for (let i = 0; i < 120; i++) await page.keyboard.press(i % 40 < 20 ? 'ArrowLeft' : 'ArrowRight');
  await page.waitForFunction(() => Number(document.querySelector('.sky-stats').dataset.frames) >= 120);
  figures.sky_frame_ms_median = Number(await page.getAttribute('.sky-stats', 'data-frame-ms'));
  await page.close();
}
const median = (v) => v.length ? [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] : null;
const round = (v) => v.map((x) => Math.round(x * 10) / 10);
console.log(JSON.stringify({
  first_paint_1000_ms_median: median(figures.first_paint_1000_ms), first_paint_1000_ms: figures.first_paint_1000_ms,
  return_visit_1000_ms_median: median(figures.return_visit_1000_ms), return_visit_1000_ms: figures.return_visit_1000_ms,
  first_paint_1000_from_navigation_ms_median: median(figures.first_paint_1000_from_navigation_ms),
  first_paint_1000_from_navigation_ms: figures.first_paint_1000_from_navigation_ms,
  return_visit_1000_from_navigation_ms_median: median(figures.return_visit_1000_from_navigation_ms),
  first_visit_where: figures.first_visit_where,
  cpu_backend: 'burn ndarray (CPU, wasm)',
  inference_32_ms_median: median(figures.inference_32_ms), inference_32_ms: round(figures.inference_32_ms),
  webgpu_first_batch_32_ms_median: median(figures.webgpu_first_32_ms), webgpu_first_batch_32_ms: round(figures.webgpu_first_32_ms),
  webgpu_warm_32_ms_median: median(figures.webgpu_warm_32_ms), webgpu_warm_32_ms: round(figures.webgpu_warm_32_ms),
  webgpu: figures.webgpu,
  sky_points: figures.sky_points, sky_frame_ms_median_while_panning: figures.sky_frame_ms_median,
}));
await browser.close();
// The server's stdout pipe keeps node's event loop alive: stop it, and so the bench.
server.kill();
