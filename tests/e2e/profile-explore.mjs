// Where Explore's first paint of 1,000 objects goes (figures, not a test): the page's
// own resource timings per load, in headless Chromium against `cosmicai serve`.
//   node tests/e2e/profile-explore.mjs   (COSMICAI_BIN, E2E_DATA as for bench.mjs)
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
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
});
const runs = [];
for (let run = 0; run < 5; run++) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  // When the 1,000 cards enter the DOM, and the long tasks before then.
  await page.addInitScript(() => {
    window.__long = [];
    new PerformanceObserver((l) => l.getEntries().forEach((e) => window.__long.push([Math.round(e.startTime), Math.round(e.duration)]))).observe({ type: 'longtask', buffered: true });
    new MutationObserver(() => {
      if (!window.__cards && document.querySelectorAll('.card').length === 1000) window.__cards = Math.round(performance.now());
    }).observe(document, { childList: true, subtree: true });
  });
  const t0 = Date.now();
  await page.goto(`${base}/#/?per_page=1000`);
  await page.waitForFunction(() => document.querySelectorAll('.card').length === 1000, null, { timeout: 60000 });
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
  const total = Date.now() - t0;
  const t = await page.evaluate(() => {
    const at = (re, key) => Math.round(performance.getEntriesByType('resource').find((e) => re.test(e.name))?.[key] ?? -1);
    return {
      nav_response_end: Math.round(performance.getEntriesByType('navigation')[0].responseEnd),
      wasm_start: at(/_bg\.wasm/, 'startTime'), wasm_end: at(/_bg\.wasm/, 'responseEnd'),
      objects_start: at(/\/api\/objects\?/, 'startTime'), objects_end: at(/\/api\/objects\?/, 'responseEnd'),
      objects_bytes: at(/\/api\/objects\?/, 'encodedBodySize'),
      cards_in_dom: window.__cards, long_tasks: window.__long,
      cards_done: Math.round(performance.now()),
    };
  });
  runs.push({ total, ...t });
  await page.close();
}
console.log(JSON.stringify(runs, null, 1));
await browser.close();
process.exit(0);
