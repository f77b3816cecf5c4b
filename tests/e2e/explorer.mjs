// End-to-end test of the explorer in headless Chromium against a real `cosmicai serve`:
// browse and filter, open an object, predict in the browser, launch a local run with
// world size 2 and watch it complete to a scatter plot. Screenshots of each page go to
// $SCREENSHOTS (default target/e2e). Exits non-zero on the first failed expectation.
import { chromium } from 'playwright-core';
import { execFileSync, spawn } from 'node:child_process';
import http from 'node:http';
import { cpSync, createReadStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import assert from 'node:assert/strict';

const root = resolve(import.meta.dirname, '../..');
const bin = process.env.COSMICAI_BIN ?? join(root, 'target/debug/cosmicai');
const shots = process.env.SCREENSHOTS ?? join(root, 'target/e2e');
mkdirSync(shots, { recursive: true });
const data = process.env.E2E_DATA ?? mkdtempSync(join(tmpdir(), 'cosmicai-e2e-'));
// The data directories weigh hundreds of MB: left behind, every CI run on a reused machine
// would fill its disk. A directory the caller named (E2E_DATA) is theirs to keep.
const ownData = process.env.E2E_DATA === undefined;
const removeDir = (dir) => rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
// Ends a `serve` child and waits for it, so that nothing writes into a directory being removed.
const stop = async (child) => {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = once(child, 'exit');
    child.kill();
    await exited;
  }
};

// Launching needs the token, as on a server off loopback: the user gives it in the launcher.
const token = 'e2e-token-0123456789abcdef';
// A CAI user's AstroMAE checkpoint (the small parity fixture, in CAI's .pt form) is served too.
const astromae = join(root, 'model/tests/fixtures/astromae_small/astromae_module.pt');
// `cosmicai serve` on `dir` with the built explorer and `more` arguments; its address
// once it listens. Nothing leaves the machine in the tests: a SkyServer that refuses connections.
const serve = (dir, more, stderr) => {
  const child = spawn(bin, ['serve', '--addr', '127.0.0.1:0', '--data-dir', dir, '--assets', join(root, 'assets'),
    '--frontend', join(root, 'dist'), '--skyserver', 'http://127.0.0.1:9/jpeg', ...more],
  { stdio: ['ignore', 'pipe', stderr] });
  process.on('exit', () => child.kill());
  const url = new Promise((ok, fail) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/\S+)/);
      if (m) ok(m[1]);
    });
    child.on('exit', (code) => fail(new Error(`serve exited with ${code}`)));
  });
  return { child, url };
};
const server = serve(data, ['--model', `astromae:${astromae}`, '--token', token], 'inherit');
const base = await server.url;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
  // playwright gives every launch a fresh, empty profile (the --user-data-dir of the recipe).
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const consoleErrors = [];
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
const step = async (name, f) => {
  process.stdout.write(`e2e: ${name} ... `);
  try { await f(); console.log('ok'); } catch (e) {
    await page.screenshot({ path: join(shots, `failed-${name.replace(/\W+/g, '-')}.png`), fullPage: true }).catch(() => {});
    console.log('FAILED'); throw e;
  }
};

// Each page, with what shows it is drawn.
const everyPage = async () => {
  const firstId = (await (await fetch(base + '/api/objects?sort=showcase&limit=1')).json()).objects[0].id;
  return [['/#/', '.card img'], ['/#/sky', 'canvas.sky'], ['/#/plots', 'canvas.plot'], ['/#/predict?backend=cpu', '.timing'],
    ['/#/runs', '.runs, h2'], ['/#/class?n=3', '.class-counter'], [`/#/object/${firstId}`, 'canvas.composite']];
};

try {
  await step('the explorer goes over the wire gzipped, at most 3 MB, and is kept by the browser', async () => {
    const page0 = await fetch(base + '/');
    assert.equal(page0.headers.get('cache-control'), 'no-cache', 'index.html is checked on every visit');
    const index = await page0.text();
    const wasm = index.match(/\/[\w.-]+_bg\.wasm/)?.[0];
    assert.ok(wasm, 'index.html names no wasm module');
    // Raw bytes as sent (fetch would inflate them).
    const { encoding, bytes, caching } = await new Promise((ok, fail) => {
      http.get(base + wasm, { headers: { 'accept-encoding': 'gzip' } }, (res) => {
        let bytes = 0;
        res.on('data', (d) => { bytes += d.length; });
        res.on('end', () => ok({ encoding: res.headers['content-encoding'], bytes, caching: res.headers['cache-control'] }));
      }).on('error', fail);
    });
    // Named by its content: a return visit reuses it (and its compiled code).
    assert.equal(caching, 'public, max-age=31536000, immutable');
    assert.equal(encoding, 'gzip', `${wasm} sent without gzip`);
    assert.ok(bytes <= 3_000_000, `${wasm}: ${bytes} bytes gzipped, over 3 MB`);
    process.stdout.write(`(${wasm.slice(1, 20)}…: ${(bytes / 1e6).toFixed(2)} MB gzipped) `);
  });

  await step('explore shows a grid of real and synthetic images', async () => {
    await page.goto(base + '/');
    await page.waitForSelector('.card img', { timeout: 60000 });
    const cards = await page.locator('.card').count();
    assert.ok(cards >= 30, `only ${cards} cards`);
    const total = Number(await page.getAttribute('.counts', 'data-total'));
    assert.ok(total > 3000, `total ${total}`);
    await page.waitForFunction(() => [...document.querySelectorAll('.card img')].slice(0, 10).every((i) => i.complete && i.naturalWidth === 64));
    // The first page shows the sky's variety: every class, labelled objects first.
    const classes = await page.locator('.card').evaluateAll((cards) => cards.map((c) => c.dataset.class));
    for (const c of ['GALAXY', 'STAR', 'QSO']) assert.ok(classes.includes(c), `no ${c} on the first page: ${classes}`);
    assert.ok(!classes.includes('UNKNOWN'), `unlabelled objects on the first page: ${classes}`);
    // Inference (burn, in its own module) waits for the first prediction.
    assert.deepEqual(page.workers().map((w) => w.url()), [], 'Explore started the inference worker');
    // The pager: Previous off on the first page, Next on (and labelled just that).
    assert.equal(await page.textContent('.pager button.next'), 'Next');
    assert.ok(await page.isEnabled('.pager button.next'));
    assert.ok(await page.isDisabled('.pager button >> nth=0'));
    await page.screenshot({ path: join(shots, 'explore.png'), fullPage: false });
    // Next from the keyboard: the page goes into the link, and the focus stays on Next.
    await page.focus('.pager button.next');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelector('.pager')?.textContent.includes(' 61–120 of '));
    assert.match(page.url(), /[?&]offset=60/);
    assert.equal(await page.evaluate(() => document.activeElement?.className), 'next');
    // A reload shows the same page.
    await page.reload();
    await page.waitForFunction(() => document.querySelector('.pager')?.textContent.includes(' 61–120 of '), null, { timeout: 60000 });
    // A link past the last object says so, and leads back to the first page.
    await page.goto(base + '/#/?offset=999999');
    await page.waitForSelector('.past-the-end', { timeout: 60000 });
    assert.match(await page.textContent('.pager'), / past the end of \d+ /);
    await page.click('button.first-page');
    await page.waitForFunction(() => document.querySelector('.pager')?.textContent.includes(' 1–60 of '), null, { timeout: 60000 });
  });

  await step('a link sets the filters, and the filters set the link', async () => {
    await page.goto(base + '/#/?class=QSO&z_min=0.5');
    await page.reload();
    await page.waitForFunction(() => {
      const c = [...document.querySelectorAll('.card')];
      return c.length > 0 && c.every((e) => e.dataset.class === 'QSO');
    }, null, { timeout: 30000 });
    assert.equal(await page.inputValue('.filters select >> nth=0'), 'QSO');
    const zs = await page.locator('.card .label').allTextContents();
    assert.ok(zs.every((t) => Number(t.split('z = ')[1]) >= 0.5), zs.join('; '));
    await page.goto(base + '/#/');
    await page.reload();
    await page.waitForSelector('.card img', { timeout: 60000 });
  });

  await step('SDSS colour JPEGs, when turned on, stand in for missing cutouts, labelled', async () => {
    // Only objects without a cutout get one: while only those with images show, the toggle is off.
    assert.ok(await page.isDisabled('input[name=jpegs]'), 'the JPEG toggle does nothing with images on');
    await page.goto(base + '/#/?images=false&sort=id');
    await page.reload();
    await page.waitForSelector('.card .no-image');
    assert.equal(await page.locator('.card img.jpeg').count(), 0);
    await page.check('input[name=jpegs]');
    await page.waitForSelector('.card img.jpeg', { state: 'attached' });
    const src = await page.getAttribute('.card img.jpeg', 'src');
    assert.match(src, /^http:\/\/127\.0\.0\.1:9\/jpeg\?ra=[0-9.]+&dec=-?[0-9.]+&scale=0\.3&width=96&height=96$/);
    assert.equal(await page.textContent('.card .jpeg-label'), 'SDSS colour JPEG, not science data');
    assert.match(page.url(), /jpegs=true/);
    await page.screenshot({ path: join(shots, 'explore-jpegs.png') });
    await page.goto(base + '/#/');
    await page.reload();
    await page.waitForSelector('.card img', { timeout: 60000 });
  });

  await step('filtering by class keeps only that class', async () => {
    await page.selectOption('.filters select >> nth=0', 'STAR');
    await page.waitForFunction(() => {
      const c = [...document.querySelectorAll('.card')];
      return c.length > 0 && c.every((e) => e.dataset.class === 'STAR');
    }, null, { timeout: 30000 });
    const text = await page.textContent('.counts');
    assert.match(text, / 0 galaxies, \d+ stars, 0 quasars/);
    assert.match(page.url(), /#\/\?class=STAR/);
    await page.screenshot({ path: join(shots, 'explore-stars.png') });
  });

  await step('an object shows its bands, composite and both predictions', async () => {
    await page.click('.card >> nth=0');
    await page.waitForSelector('canvas.composite');
    assert.match(await page.title(), /^Object \d+ · CosmicAI$/);
    await page.waitForSelector('tr.browser', { timeout: 60000 });
    const server = await page.textContent('tr.server');
    const mine = await page.textContent('tr.browser');
    assert.match(server, /server/);
    assert.match(mine, /browser \(burn ndarray/);
    assert.ok(page.workers().some((w) => w.url().endsWith('/cosmicai-infer_loader.js')), 'no inference worker');
    // PhotoZ gives σ_z, on the server and in the browser alike.
    const photoz = await page.textContent('tr.server[data-model="photoz (shipped)"]');
    const sigma = (row) => Number(row.match(/± (\d\.\d{4})/)[1]);
    assert.ok(sigma(photoz) > 0, photoz);
    assert.ok(Math.abs(sigma(photoz) - sigma(mine)) < 2e-4, `${photoz} / ${mine}`);
    // The served AstroMAE predicts this object's redshift from its cutout, and no class.
    const cai = await page.textContent('tr.server[data-model="astromae:astromae_module.pt"]');
    assert.match(cai, /\d\.\d{4}/);
    assert.match(cai, /no class prediction/);
    assert.equal(await page.locator('.images img').count(), 5);
    // The composite was drawn: some pixel is not black.
    const lit = await page.evaluate(() => {
      const c = document.querySelector('canvas.composite');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      return d.some((v, i) => i % 4 !== 3 && v > 20);
    });
    assert.ok(lit, 'the composite canvas is black');
    // Back to the objects as they were filtered.
    assert.match(await page.getAttribute('a.back-to-explore', 'href'), /^#\/\?class=STAR/);
    await page.screenshot({ path: join(shots, 'object.png'), fullPage: true });
    // The browser's Back shows the page the link names, filters and all...
    await page.goBack();
    await page.waitForSelector('.card');
    assert.equal(await page.inputValue('.filters select >> nth=0'), 'STAR');
    assert.ok((await page.locator('.card').evaluateAll((cs) => cs.map((c) => c.dataset.class))).every((c) => c === 'STAR'));
    // ...and the Explore link, taken from the keyboard, shows every object
    // again, with the focus moved to the new page (not left on the link).
    await page.focus('nav a[href="#/"]');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelector('.filters select')?.value === '');
    assert.equal(await page.evaluate(() => document.activeElement?.tagName), 'MAIN');
    await page.waitForFunction(() => new Set([...document.querySelectorAll('.card')].map((c) => c.dataset.class)).size > 1);
    await page.goBack();
    await page.waitForFunction(() => document.querySelector('.filters select')?.value === 'STAR');
  });

  await step('prediction in the browser of the objects on a page', async () => {
    await page.goto(base + '/#/');
    await page.selectOption('.filters select >> nth=0', 'GALAXY');
    // (every() of no cards is true: the grid must have reloaded, not be empty.)
    await page.waitForFunction(() => { const c = [...document.querySelectorAll('.card')]; return c.length > 0 && c.every((e) => e.dataset.class === 'GALAXY'); });
    await page.click('button.predict-these');
    await page.waitForSelector('.timing', { timeout: 60000 });
    const n = Number(await page.getAttribute('.timing', 'data-objects'));
    assert.ok(n > 0 && n <= 64, `${n} objects`);
    assert.equal(await page.locator('td.zpred').count(), n);
    // The scatter is the plots' canvas component, drawn.
    assert.ok(Number(await page.getAttribute('.scatter', 'data-points')) >= 1);
    await page.waitForFunction(() => Number(document.querySelector('.scatter canvas.plot')?.dataset.drawn) >= 1);
    console.log(`(${await page.textContent('.timing')})`);
    await page.screenshot({ path: join(shots, 'predict.png'), fullPage: true });
  });

  await step('the sky map selects a region and sends it to Predict', async () => {
    await page.goto(base + '/#/sky');
    await page.waitForFunction(() => Number(document.querySelector('.sky-stats')?.dataset.frames) >= 1, null, { timeout: 60000 });
    const points = Number(await page.getAttribute('canvas.sky', 'data-points'));
    assert.ok(points > 30000, `${points} points on the sky`);
    // Points are drawn in class colours over the dark map.
    const lit = await page.evaluate(() => {
      const c = document.querySelector('canvas.sky');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let galaxies = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] === 255 && d[i + 1] === 196 && d[i + 2] === 84) galaxies++;
      return galaxies;
    });
    assert.ok(lit > 500, `${lit} galaxy-coloured pixels`);
    // Keyboard: arrows pan, "0" shows the whole sky again; each redraws.
    const frames = Number(await page.getAttribute('.sky-stats', 'data-frames'));
    await page.focus('canvas.sky');
    for (const key of ['ArrowLeft', 'ArrowUp', '+', '-', '0']) await page.keyboard.press(key);
    await page.waitForFunction((n) => Number(document.querySelector('.sky-stats').dataset.frames) >= n + 5, frames);
    // The whole sky's centre is RA 180°, Dec 0° (the pointer's position is shown).
    const canvas = await page.locator('canvas.sky').boundingBox();
    await page.mouse.move(canvas.x + canvas.width / 2, canvas.y + canvas.height / 2);
    await page.waitForSelector('.sky-hover[data-ra]');
    const ra = Number(await page.getAttribute('.sky-hover', 'data-ra'));
    const dec = Number(await page.getAttribute('.sky-hover', 'data-dec'));
    assert.ok(Math.abs(ra - 180) < 0.5 && Math.abs(dec) < 0.5, `pointer at RA ${ra}, Dec ${dec}`);
    // Colour by redshift: the galaxy colour goes.
    await page.selectOption('select.sky-colour', 'redshift');
    // A box over the northern sky, drawn with shift held.
    const box = await page.locator('canvas.sky').boundingBox();
    await page.keyboard.down('Shift');
    await page.mouse.move(box.x + 240, box.y + 40);
    await page.mouse.down();
    await page.mouse.move(box.x + 480, box.y + 160, { steps: 5 });
    await page.mouse.move(box.x + 720, box.y + 260, { steps: 5 });
    await page.mouse.up();
    await page.keyboard.up('Shift');
    await page.waitForSelector('.sky-selection');
    const selected = Number(await page.getAttribute('.sky-selection', 'data-selected'));
    assert.ok(selected > 10, `${selected} selected`);
    console.log(`(${selected} selected; ${await page.textContent('.sky-stats')})`);
    await page.screenshot({ path: join(shots, 'sky.png'), fullPage: true });
    await page.click('button.sky-predict');
    await page.waitForSelector('.timing', { timeout: 60000 });
    const n = Number(await page.getAttribute('.timing', 'data-objects'));
    assert.equal(n, Math.min(selected, 1000));
    await page.screenshot({ path: join(shots, 'sky-predict.png'), fullPage: true });
  });

  await step('a box on a colour plot cuts the objects, the other plots and Explore follow', async () => {
    await page.goto(base + '/#/plots');
    await page.waitForFunction(() => {
      const plots = [...document.querySelectorAll('canvas.plot')];
      return plots.length === 3 && plots.every((c) => Number(c.dataset.drawn) >= 1);
    }, null, { timeout: 60000 });
    const summary = '.plots-summary';
    const total = Number(await page.getAttribute(summary, 'data-total'));
    assert.ok(total > 30000, `${total} objects on the plots`);
    assert.equal(Number(await page.getAttribute(summary, 'data-pass')), total, 'no cuts, all pass');
    // The legend names each class's colour.
    assert.match(await page.textContent('.plots-legend'), /galaxy.*star.*quasar.*unlabelled.*outside the cuts/);
    // A link that cuts on provenance shows it in the Data control.
    const drawnAll = () => page.waitForFunction(() => {
      const plots = [...document.querySelectorAll('canvas.plot')];
      return plots.length === 3 && plots.every((c) => Number(c.dataset.drawn) >= 1);
    }, null, { timeout: 60000 });
    await page.goto(base + '/#/plots?provenance=real');
    await page.reload();
    await drawnAll();
    await page.waitForFunction((t) => Number(document.querySelector('.plots-summary')?.dataset.pass) < t, total, { timeout: 60000 });
    assert.equal(await page.inputValue('select.plots-provenance'), 'real');
    await page.goto(base + '/#/plots');
    await page.reload();
    await drawnAll();
    await page.waitForFunction((t) => Number(document.querySelector('.plots-summary')?.dataset.pass) === t, total, { timeout: 60000 });
    // Data: real only leaves the renderings out, in the link too; then back to all.
    await page.selectOption('select.plots-provenance', 'real');
    await page.waitForFunction((t) => Number(document.querySelector('.plots-summary').dataset.pass) < t, total);
    assert.ok((await page.evaluate(() => location.hash)).includes('provenance=real'));
    await page.selectOption('select.plots-provenance', '');
    await page.waitForFunction((t) => Number(document.querySelector('.plots-summary').dataset.pass) === t, total);
    // Around the galaxies on u−g against g−r: g−r 0.3 to 0.9, u−g 1.2 to 2.0.
    const box = await page.locator('canvas.plot[data-x="gr"]').boundingBox();
    const drawn = Number(await page.getAttribute('canvas.plot[data-x="ri"]', 'data-drawn'));
    await page.mouse.move(box.x + 96, box.y + 112);
    await page.mouse.down();
    await page.mouse.move(box.x + 130, box.y + 140, { steps: 4 });
    await page.mouse.move(box.x + 168, box.y + 172, { steps: 4 });
    await page.mouse.up();
    await page.waitForFunction((t) => Number(document.querySelector('.plots-summary').dataset.pass) < t, total);
    const pass = Number(await page.getAttribute(summary, 'data-pass'));
    assert.ok(pass > 100 && pass < total, `${pass} of ${total} pass the cut`);
    const link = await page.evaluate(() => location.hash);
    for (const key of ['gr_min', 'gr_max', 'ug_min', 'ug_max']) assert.ok(link.includes(key), `${key} not in ${link}`);
    // The linked plot (g−r against r−i) was drawn again, with grey for what fails.
    await page.waitForFunction((n) => Number(document.querySelector('canvas.plot[data-x="ri"]').dataset.drawn) > n, drawn);
    const grey = await page.evaluate(() => {
      const c = document.querySelector('canvas.plot[data-x="ri"]');
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] === 58 && d[i + 1] === 62 && d[i + 2] === 74) n++;
      return n;
    });
    assert.ok(grey > 100, `${grey} grey pixels on the linked plot`);
    console.log(`(${pass} of ${total} pass) `);
    await page.screenshot({ path: join(shots, 'plots.png'), fullPage: true });
    // Explore lists exactly the objects that pass: the API applies the same cuts.
    await page.click('a.plots-explore');
    await page.waitForFunction((p) => Number(document.querySelector('.counts')?.dataset.total) === p, pass, { timeout: 30000 })
      .catch(async (e) => { throw new Error(`Explore lists ${await page.getAttribute('.counts', 'data-total')}, the plots ${pass}: ${e}`); });
    assert.ok(await page.isVisible('.plot-cuts'), 'Explore shows the cuts');
    await page.screenshot({ path: join(shots, 'explore-cut.png'), fullPage: false });
    // And the sky shows them: passing objects in colour, the rest grey.
    await page.goto(base + '/#/sky?' + link.split('?')[1]);
    await page.waitForSelector('.sky-cuts', { timeout: 60000 });
    assert.equal(Number(await page.getAttribute('.sky-cuts', 'data-pass')), pass);
    // Clearing them keeps the map as it is (no new page, no refetch) and the link follows.
    await page.evaluate(() => { document.querySelector('canvas.sky').dataset.kept = 'yes'; });
    await page.click('button.sky-cuts-clear');
    await page.waitForSelector('.sky-cuts', { state: 'detached' });
    assert.equal(await page.getAttribute('canvas.sky', 'data-kept'), 'yes');
    assert.match(page.url(), /#\/sky$/);
  });

  await step('classroom mode reveals predictions one object at a time, offline once loaded', async () => {
    await page.goto(base + '/#/class?n=5');
    await page.reload();
    await page.waitForSelector('.class-counter', { timeout: 60000 });
    assert.equal(await page.textContent('.class-counter'), 'Object 1 of 5');
    // Every image of the set loads now, so the lesson survives the network going.
    await page.waitForFunction(() => [...document.querySelectorAll('img.class-image')].every((i) => i.complete && i.naturalWidth === 64));
    assert.equal(await page.locator('img.class-image').count(), 5);
    assert.equal(await page.locator('.class-prediction').count(), 0, 'nothing is revealed before the room guesses');
    await page.context().setOffline(true);
    // From the keyboard (a presenter's remote): reveal hands the focus on to "next object".
    await page.focus('button.class-reveal');
    await page.keyboard.press('Enter');
    await page.waitForSelector('.class-prediction');
    assert.equal(await page.evaluate(() => document.activeElement?.className), 'class-next');
    const z = Number(await page.getAttribute('.class-prediction', 'data-z'));
    assert.ok(Number.isFinite(z) && z > -0.1 && z < 8, `predicted z ${z}`);
    assert.match(await page.textContent('.class-truth'), /Spectrum: z = \d/);
    assert.equal(await page.getAttribute('.class-scatter', 'data-points'), '1');
    await page.click('button.class-next');
    assert.equal(await page.textContent('.class-counter'), 'Object 2 of 5');
    await page.click('button.class-reveal');
    assert.equal(await page.getAttribute('.class-scatter', 'data-points'), '2');
    const shown = await page.locator('img.class-image').evaluateAll((imgs) => imgs.filter((i) => i.style.display !== 'none').map((i) => i.naturalWidth));
    assert.deepEqual(shown, [64], 'the second image shows, from the cache');
    await page.screenshot({ path: join(shots, 'classroom.png'), fullPage: true });
    await page.context().setOffline(false);
    // A changed count makes a new set at once, from its first object, nothing revealed.
    await page.fill('input.class-count', '3');
    await page.press('input.class-count', 'Enter');
    await page.waitForFunction(() => document.querySelector('.class-counter')?.textContent === 'Object 1 of 3');
    assert.equal(await page.locator('.class-prediction').count(), 0);
  });

  // The same 32 galaxies on each backend: WebGPU (Chromium's adapter; SwiftShader when
  // headless) must agree with the CPU path, and both say which backend ran.
  const predictOn = async (backend) => {
    await page.goto(`${base}/#/predict?backend=${backend}`);
    await page.reload(); // a fresh page: the backend is read from the link at start
    await page.waitForSelector('.timing, .error', { timeout: 120000 });
    assert.equal(await page.locator('.error').count(), 0, await page.locator('.error').first().textContent().catch(() => ''));
    const ran = await page.getAttribute('.timing', 'data-backend');
    const zs = (await page.locator('td.zpred').allTextContents()).map(Number);
    return { ran, zs, text: await page.textContent('.timing') };
  };
  await step('in-browser inference on WebGPU agrees with the CPU path', async () => {
    const cpu = await predictOn('cpu');
    assert.equal(cpu.ran, 'cpu');
    const gpu = await predictOn('webgpu');
    assert.equal(gpu.ran, 'webgpu', gpu.text);
    assert.match(gpu.text, /WebGPU/);
    assert.equal(gpu.zs.length, 32);
    assert.deepEqual(gpu.zs.length, cpu.zs.length);
    const worst = Math.max(...gpu.zs.map((z, i) => Math.abs(z - cpu.zs[i])));
    assert.ok(worst <= 2e-4, `WebGPU and CPU differ by ${worst}`);
    await page.click('button.again');
    await page.waitForFunction(() => document.querySelectorAll('table.batches tr').length === 3);
    assert.equal(await page.getAttribute('.timing', 'data-first'), 'false');
    console.log(`(${cpu.text}; ${gpu.text})`);
    await page.screenshot({ path: join(shots, 'predict-webgpu.png'), fullPage: true });
  });

  // Two browsers without WebGPU, in the page and in its workers (where inference runs):
  // headless Chromium without --enable-unsafe-webgpu has navigator.gpu but no adapter;
  // one with no navigator.gpu at all (Firefox and Safari without WebGPU) is this Chromium
  // with the property taken away before the page's and the worker's own code runs.
  const hideGpu = 'Object.defineProperty((self.WorkerNavigator ?? self.Navigator).prototype, "gpu", { get: () => undefined });';
  for (const [what, hidden, why] of [['no WebGPU adapter', false, /no WebGPU adapter/], ['no navigator.gpu', true, /navigator\.gpu is missing/]]) {
    await step(`with ${what}, auto falls back to the CPU and says why`, async () => {
      const bare = await chromium.launch({
        executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
          '--disable-component-update', '--disable-sync', '--no-first-run'],
      });
      const context = await bare.newContext();
      if (hidden) {
        await context.addInitScript(hideGpu);
        await context.route('**/cosmicai-infer_loader.js', async (route) => {
          const response = await route.fetch();
          await route.fulfill({ response, body: hideGpu + '\n' + (await response.text()) });
        });
      }
      const plain = await context.newPage();
      await plain.goto(`${base}/#/predict?backend=auto`);
      assert.equal(await plain.evaluate(async () => (await navigator.gpu?.requestAdapter()) ?? null), null, 'this browser has WebGPU');
      assert.equal(await plain.evaluate(() => navigator.gpu === undefined), hidden);
      await plain.waitForSelector('.timing', { timeout: 60000 });
      assert.equal(await plain.getAttribute('.timing', 'data-backend'), 'cpu');
      assert.match(await plain.textContent('.fallback'), why);
      await plain.selectOption('select.backend', 'webgpu');
      await plain.waitForSelector('.error');
      assert.match(await plain.textContent('.error'), why);
      await bare.close();
    });
  }

  await step('a local run with world size 2 completes to a scatter plot', async () => {
    await page.goto(base + '/#/runs');
    await page.fill('input[name=world_size]', '2');
    await page.fill('input[name=batch_size]', '4096');
    // Without the token the server refuses, and the page says where to give it.
    await page.click('button.estimate');
    await page.waitForSelector('.error');
    assert.match(await page.textContent('.error'), /401.*Server token/);
    await page.fill('input[name=token]', token);
    await page.click('button.estimate');
    await page.waitForSelector('.estimate-result');
    assert.match(await page.textContent('.estimate-result'), /over 2 ranks, about [\d.]+ s run on this server \(\d+ at a time\), and \$[\d.]+ at AWS prices \(Lambda on (x86_64|arm64)\)\./);
    await page.click('button.launch');
    await page.waitForSelector('.rank', { timeout: 30000 });
    await page.screenshot({ path: join(shots, 'run-live.png') });
    await page.waitForFunction(() => document.querySelector('.run-status')?.textContent.startsWith('finished'), null, { timeout: 180000 });
    assert.equal(await page.textContent('.run-status'), 'finished: succeeded');
    await page.waitForSelector('.results .scatter canvas.plot', { timeout: 30000 });
    assert.equal(await page.locator('.rank').count(), 2);
    // The run's settings, every rank counted, no cancel once it is over, and
    // what share of the labelled objects the plots show.
    assert.match(await page.textContent('.run-settings'), /^2 ranks · batch 4096 · cpu · data catalog$/);
    assert.match(await page.textContent('.overall'), /^2 of 2 ranks done, 0 failed/);
    assert.equal(await page.locator('button.cancel').count(), 0);
    assert.match(await page.textContent('.scatter-sample'), /an even sample of \d+ of the \d+ labelled objects/);
    // Done means full: a finished rank's bar reaches its end, whatever its share of objects.
    const bars = await page.$$eval('.rank[data-state=done] progress', (ps) => ps.map((p) => [p.value, p.max]));
    assert.equal(bars.length, 2);
    for (const [value, max] of bars) assert.equal(value, max);
    assert.ok(Number(await page.getAttribute('.results .scatter', 'data-points')) > 20);
    await page.waitForFunction(() => Number(document.querySelector('.results .scatter canvas.plot')?.dataset.drawn) >= 1);
    // Axes with round ticks from 0, both ways, ending past 99.5% of the points.
    const ticks = await page.locator('.results .scatter text.tick').allTextContents();
    assert.ok(ticks.length >= 6 && ticks[0] === '0', ticks.join(' '));
    assert.ok(ticks.every((t) => Number.isFinite(Number(t))), ticks.join(' '));
    assert.ok(await page.locator('table.metrics tr').count() >= 2);
    // The validation split, which the shipped PhotoZ never trained on, has its own row.
    const held = await page.locator('table.metrics tr', { hasText: 'galaxy, held out' }).locator('td').allTextContents();
    const every = await page.locator('table.metrics tr', { hasText: /^galaxy\d/ }).locator('td').allTextContents();
    assert.ok(Number(held[1]) > 0 && Number(held[1]) < Number(every[1]), `held out ${held[1]} of ${every[1]} galaxies`);
    // Keeping the run's data in S3 is priced a month, below the run's total.
    assert.match(await page.textContent('table.cost tr.storage'), /^S3 storage of the data\d+\.\d+ [kMG]B in S3 Standard, a month \(not in the total\)\$\d+\.\d{6}$/);
    // PhotoZ's σ_z, scored on the run's galaxies.
    const within1 = Number(await page.getAttribute('p.calibration', 'data-within-1'));
    assert.ok(within1 > 0.5 && within1 < 0.95, `within 1σ: ${within1}`);
    await page.screenshot({ path: join(shots, 'run-results.png'), fullPage: true });
    // Outliers are marked in red on the plot and listed as links under it; a click
    // on a mark opens its object (the nearest outlier, where marks overlap).
    const outliers = await page.$$eval('.results .scatter a.outlier', (as) => as.map((a) => [a.textContent, a.title]));
    const marked = await page.getAttribute('.results .scatter', 'data-outliers');
    assert.ok(outliers.length > 5, `${outliers.length} outlier links`);
    // Every outlier among the points counted, and what makes one said; the
    // colour scale and the histogram's fullest bin shown.
    const said = await page.textContent('.results .scatter p.outliers');
    const [, counted, shown] = said.match(/^(\d+) of the (\d+) points are outliers \(\|Δz\| \/ \(1 \+ z\) > 0\.15\)/) ?? [];
    assert.ok(Number(counted) >= marked.split(' ').length && Number(shown) > Number(counted), said);
    assert.match(await page.textContent('.results .scatter .colour-scale'), /^points a bin: 1 +\d+ \(log scale\)$/);
    assert.match(await page.textContent('.results svg.histogram'), /\d+ objects in the fullest bin/);
    const top = Number(ticks[ticks.length - 1]);
    // The marked ones are the 300 farthest off of the points within the axes
    // (not the first 300 found): the run has more outliers than that.
    const runId = (await page.evaluate(() => location.hash)).split('/').pop();
    const scatter = (await (await fetch(`${base}/api/runs/${runId}/results`)).json()).scatter;
    const off = (p) => Math.abs((p.z_pred - p.z_spec) / (1 + p.z_spec));
    const within = (p) => Math.max(p.z_spec, p.z_pred) <= top && Math.min(p.z_spec, p.z_pred) >= -0.01;
    const offs = scatter.filter((p) => off(p) > 0.15 && within(p)).map(off).sort((a, b) => b - a);
    assert.ok(offs.length > 300, `${offs.length} outliers within the axes`);
    const byId = new Map(scatter.map((p) => [String(p.id), p]));
    assert.equal(marked.split(' ').length, 300);
    assert.ok(marked.split(' ').every((id) => off(byId.get(id)) >= offs[299] - 1e-6), 'a marked outlier nearer than the 300th farthest');
    // The farthest off (listed first), whose ring is drawn 3 pixels in from the edges.
    const [, x, y] = outliers[0][1].match(/spectroscopic z (-?[\d.]+), predicted (-?[\d.]+)/).map(Number);
    const plot = await page.locator('.results .scatter canvas.plot').boundingBox();
    const border = (plot.width - 300) / 2; // the canvas is 300 pixels inside its border
    const inside = (p) => Math.min(Math.max(p, 3), 296);
    const [px, py] = [plot.x + border + inside((Math.max(x, 0) / top) * 300), plot.y + border + inside(300 - (Math.max(y, 0) / top) * 300)];
    // Where the red is, within 20 pixels of where the outlier should be.
    const red = await page.$eval('.results .scatter canvas.plot', (c, [px, py]) => {
      const [x0, y0] = [Math.round(px) - 20, Math.round(py) - 20];
      const d = c.getContext('2d').getImageData(x0, y0, 41, 41).data;
      const at = [];
      for (let i = 0; i < d.length; i += 4) if (d[i] === 255 && d[i + 1] === 107 && d[i + 2] === 107) at.push([x0 + (i / 4) % 41, y0 + Math.floor(i / 4 / 41)]);
      return at;
    }, [px - plot.x - border, py - plot.y - border]);
    const near = red.filter(([rx, ry]) => Math.abs(rx - (px - plot.x - border)) <= 4 && Math.abs(ry - (py - plot.y - border)) <= 4);
    assert.ok(near.length > 0, `no red mark at the outlier (${x}, ${y}) at ${px - plot.x - border}, ${py - plot.y - border} of ${JSON.stringify(plot)}, top ${top}: red at ${JSON.stringify(red.slice(0, 12))}`);
    await page.mouse.click(px, py);
    await page.waitForFunction(() => /^#\/object\/\d+$/.test(location.hash));
    const id = (await page.evaluate(() => location.hash)).split('/').pop();
    assert.ok(marked.split(' ').includes(id), `opened ${id}, not an outlier`);
    await page.waitForFunction((id) => document.querySelector('main h2')?.textContent.endsWith(id), id, { timeout: 30000 });
  });

  // After the run step: this browser holds the server's token by now.
  await step('a cut on the plots launches a run on exactly its objects', async () => {
    await page.goto(base + '/#/plots?ug_min=1.2&ug_max=2&gr_min=0.3&gr_max=0.9&class=GALAXY');
    await page.waitForFunction(() => Number(document.querySelector('.plots-summary')?.dataset.pass) > 0, null, { timeout: 60000 });
    const pass = Number(await page.getAttribute('.plots-summary', 'data-pass'));
    // The first 1,000 that pass go to Predict in the browser.
    const cut = await page.evaluate(() => location.hash);
    await page.click('button.plots-predict');
    await page.waitForSelector('.timing', { timeout: 60000 });
    assert.equal(Number(await page.getAttribute('.timing', 'data-objects')), Math.min(pass, 1000));
    await page.goto(base + '/' + cut);
    await page.waitForFunction((p) => Number(document.querySelector('.plots-summary')?.dataset.pass) === p, pass, { timeout: 60000 });
    await page.click('button.plots-run');
    await page.waitForSelector('.run-selection', { timeout: 30000 });
    const data = await page.inputValue('input[name=data_prefix]');
    assert.match(data, /^selections\/sel-[0-9a-f]{32}$/);
    assert.match(await page.textContent('.run-selection'), new RegExp(`selection of ${pass} objects`));
    await page.click('button.launch');
    await page.waitForFunction(() => document.querySelector('.run-status')?.textContent.startsWith('finished'), null, { timeout: 180000 });
    assert.equal(await page.textContent('.run-status'), 'finished: succeeded');
    await page.waitForSelector('.results-line', { timeout: 30000 });
    assert.match(await page.textContent('.results-line'), new RegExp(`^${pass} objects in`));
    console.log(`(${pass} objects) `);
  });

  await step('a lasso on the sky selects inside its outline, and launches a run', async () => {
    await page.goto(base + '/#/sky');
    await page.waitForFunction(() => Number(document.querySelector('.sky-stats')?.dataset.frames) >= 1, null, { timeout: 60000 });
    const box = await page.locator('canvas.sky').boundingBox();
    const drag = async (corners) => {
      await page.mouse.move(box.x + corners[0][0], box.y + corners[0][1]);
      await page.mouse.down();
      for (const [x, y] of corners.slice(1)) await page.mouse.move(box.x + x, box.y + y, { steps: 8 });
      await page.mouse.up();
      await page.waitForSelector('.sky-selection');
      return Number(await page.getAttribute('.sky-selection', 'data-selected'));
    };
    // A box, then a triangle lasso with the same bounds: the triangle holds fewer.
    await page.selectOption('select.sky-tool', 'box');
    const inBox = await drag([[240, 40], [720, 260]]);
    await page.selectOption('select.sky-tool', 'lasso');
    await page.click('button.sky-clear');
    const inLasso = await drag([[240, 40], [720, 40], [240, 260], [240, 40]]);
    assert.ok(inLasso > 10 && inLasso < inBox, `lasso ${inLasso}, its bounding box ${inBox}`);
    await page.screenshot({ path: join(shots, 'sky-lasso.png'), fullPage: true });
    await page.click('button.sky-run');
    await page.waitForSelector('.run-selection', { timeout: 30000 });
    assert.match(await page.textContent('.run-selection'), new RegExp(`selection of ${inLasso} objects`));
    console.log(`(lasso ${inLasso}, box ${inBox}) `);
  });

  await step('an AstroMAE run chosen in the launcher completes; its rendered objects are counted, never scored', async () => {
    const models = await (await fetch(base + '/api/models')).json();
    assert.deepEqual(models.map((m) => m.name), ['photoz', 'astromae:astromae_module.pt']);
    // AstroMAE in this debug build predicts about 5 objects a second on two cores:
    // a small dataset of 64-object partitions, cut from the served synthetic cutouts.
    execFileSync(bin, ['partition', '--input', join(data, 'synthetic'), '--objects', '64',
      '--out', join(data, 'synthetic-64')], { stdio: 'ignore' });
    await page.goto(base + '/#/runs');
    // Target AWS offers data already in S3; this machine does not.
    await page.selectOption('select[name=target]', 'aws');
    await page.waitForSelector('input[name=s3_data]');
    await page.selectOption('select[name=target]', 'local');
    await page.waitForSelector('input[name=s3_data]', { state: 'detached' });
    // Options of a closed <select> are never "visible" to Playwright: wait for it to exist.
    await page.waitForSelector('select[name=model] option[value="astromae:astromae_module.pt"]', { state: 'attached' });
    await page.selectOption('select[name=model]', 'astromae:astromae_module.pt');
    await page.fill('input[name=data_prefix]', 'synthetic-64');
    await page.fill('input[name=file_limit]', '2');
    await page.fill('input[name=world_size]', '2');
    await page.fill('input[name=batch_size]', '64');
    await page.click('button.launch');
    await page.waitForFunction(() => document.querySelector('.run-status')?.textContent.startsWith('finished'), null, { timeout: 300000 });
    assert.equal(await page.textContent('.run-status'), 'finished: succeeded');
    // Their labels drew their images: no accuracy is claimed on them, and the plots leave them out.
    await page.waitForSelector('.results .synthetic-left-out', { timeout: 30000 });
    assert.match(await page.textContent('.results .synthetic-left-out'), /128 objects came from the renderer/);
    const scatter = await page.$('.results .scatter');
    if (scatter) assert.equal(Number(await scatter.getAttribute('data-points')), 0);
    assert.equal(await page.locator('.results table.metrics tr').count(), 1);
    // What computed it: AstroMAE's fused CPU kernels, as its ranks recorded.
    assert.match(await page.textContent('.results-line'), /astromae:astromae_module\.pt on cpu in fp32 \(fused CPU, fp32\), no class prediction/);
    await page.screenshot({ path: join(shots, 'run-astromae.png'), fullPage: true });
  });

  await step('a run is cancelled from its page and ends with its ranks stopped', async () => {
    await page.goto(base + '/#/runs');
    await page.selectOption('select[name=model]', 'photoz');
    await page.fill('input[name=data_prefix]', 'catalog');
    await page.fill('input[name=file_limit]', '');
    await page.fill('input[name=world_size]', '8');
    await page.fill('input[name=batch_size]', '8');
    await page.click('button.launch');
    await page.waitForSelector('.rank', { timeout: 30000 });
    await page.click('button.cancel');
    await page.waitForFunction(() => document.querySelector('.run-status')?.textContent.startsWith('finished'), null, { timeout: 120000 });
    assert.match(await page.textContent('.run-status'), /^finished: cancelled$/);
    // What the server said stays; the button goes with the run.
    assert.match(await page.textContent('.cancel .note'), /cancel requested/);
    assert.equal(await page.locator('button.cancel').count(), 0);
    assert.ok((await page.locator('.rank[data-state=done]').count()) < 8);
  });

  await step('a cancelled run is resumed from its page: its finished ranks kept, the others run', async () => {
    const kept = await page.locator('.rank[data-state=done]').count();
    await page.waitForSelector('button.resume', { timeout: 30000 });
    await page.click('button.resume');
    await page.waitForFunction(() => document.querySelector('.run-status')?.textContent === 'finished: succeeded', null, { timeout: 300000 });
    assert.equal(await page.locator('.rank[data-state=done]').count(), 8);
    await page.waitForSelector('.results .results-line', { timeout: 30000 });
    // The ranks done before the cancel are said kept (none may have been).
    if (kept > 0) {
      assert.match(await page.textContent('.results .resumed'), new RegExp(`^Resumed: ${kept} ranks? kept from an earlier attempt`));
    } else {
      assert.equal(await page.locator('.results .resumed').count(), 0);
    }
    // Nothing is left to resume.
    assert.equal(await page.locator('button.resume').count(), 0);
  });

  await step('with its live stream refused, a run is followed by asking; a busy reply is asked again', async () => {
    // A server out of stream slots (or a proxy that drops event streams): the
    // page says so, and the ranks' progress still comes, through GET /api/runs/{id}.
    await page.route('**/api/runs/*/events', (route) => route.fulfill({ status: 429, contentType: 'application/json', body: '{"error":"64 event streams already open"}' }));
    // The server's reply slots full once (a class opening one run at once): 429, asked again.
    let busy = 0;
    await page.route('**/api/runs/*/results', (route) => {
      if (busy++ === 0) return route.fulfill({ status: 429, headers: { 'Retry-After': '1' }, contentType: 'application/json', body: '{"error":"16 replies already running"}' });
      return route.continue();
    });
    try {
      await page.goto(base + '/#/runs');
      await page.selectOption('select[name=model]', 'photoz');
      await page.fill('input[name=data_prefix]', 'catalog');
      await page.fill('input[name=file_limit]', '');
      await page.fill('input[name=world_size]', '2');
      await page.fill('input[name=batch_size]', '4096');
      await page.click('button.launch');
      await page.waitForSelector('.polling', { timeout: 30000 });
      await page.waitForFunction(() => document.querySelector('.run-status')?.textContent.startsWith('finished'), null, { timeout: 180000 });
      assert.equal(await page.textContent('.run-status'), 'finished: succeeded');
      assert.match(await page.textContent('.overall'), /^2 of 2 ranks done, 0 failed/);
      assert.equal(await page.locator('.rank[data-state=done]').count(), 2);
      await page.waitForSelector('.results .scatter canvas.plot', { timeout: 30000 });
      assert.ok(busy >= 2, `results asked ${busy} times`);
    } finally {
      await page.unroute('**/api/runs/*/events');
      await page.unroute('**/api/runs/*/results');
    }
  });

  await step('a sweep over world sizes 1 and 2 draws duration and cost charts', async () => {
    await page.goto(base + '/#/runs');
    // The launcher may keep the AstroMAE run's choices: set every one this sweep needs.
    await page.selectOption('select[name=model]', 'photoz');
    await page.fill('input[name=data_prefix]', 'catalog');
    await page.fill('input[name=batch_size]', '4096');
    // A typo in the file limit is named, not read as "every file".
    await page.fill('input[name=file_limit]', '4x');
    await page.fill('input[name=sweep_sizes]', '1,2');
    await page.click('button.sweep');
    await page.waitForSelector('.error');
    assert.match(await page.textContent('.error'), /file limit: "4x" is not a whole number/);
    await page.fill('input[name=file_limit]', '4');
    await page.fill('input[name=sweep_sizes]', '1,2');
    await page.click('button.sweep');
    await page.waitForSelector('.sweep-state[data-state=finished]', { timeout: 180000 });
    assert.equal(await page.locator('table.sweep tr').count(), 3);
    assert.equal(await page.locator('svg.lines').count(), 2);
    assert.equal(await page.locator('svg.lines circle').count(), 4);
    await page.screenshot({ path: join(shots, 'sweep.png'), fullPage: true });
    const sweepUrl = page.url();
    // Each run's page links its sweep, whose cancel alone stops it: no Cancel run there.
    await page.click('table.sweep tr[data-status=succeeded] a');
    await page.waitForSelector('.part-of-sweep a');
    assert.equal(await page.locator('button.cancel').count(), 0);
    await page.click('.part-of-sweep a');
    await page.waitForSelector('.sweep-state[data-state=finished]');
    assert.equal(page.url(), sweepUrl);
    // Found again from the Runs page, without its link.
    await page.goto(base + '/#/runs');
    await page.waitForSelector('table.sweeps tr[data-state=finished] a');
    // The history says which model each run ran (the checkpoint by its name, not its host path).
    const models = new Set(await page.locator('table.history td.model').allTextContents());
    assert.ok(models.has('photoz') && models.has('astromae:astromae_module.pt'), [...models].join(', '));
    await page.click('table.sweeps tr[data-state=finished] a');
    await page.waitForSelector('.sweep-state[data-state=finished]');
    assert.equal(page.url(), sweepUrl);
  });

  await step('every page passes axe-core with no violation, and the grid is reachable by keyboard', async () => {
    const axeSource = join(root, 'tests/e2e/node_modules/axe-core/axe.min.js');
    const pages = await everyPage();
    const found = [];
    for (const [route, ready] of pages) {
      await page.goto(base + route);
      await page.reload();
      await page.waitForSelector(ready, { timeout: 60000 });
      await page.addScriptTag({ path: axeSource });
      const violations = await page.evaluate(async () => (await axe.run(document)).violations
        .map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, first: v.nodes[0]?.html.slice(0, 120) })));
      found.push(`${route}: ${violations.length ? violations.map((v) => `${v.id} (${v.impact})`).join(', ') : 'none'}`);
      // None at all, moderate ones too (every part of a page in a landmark, say).
      assert.deepEqual(violations, [], `${route}: ${JSON.stringify(violations)}`);
    }
    console.log(`(${found.join('; ')})`);
    // Keyboard: Tab from the top reaches the filters, then the grid's cards (links).
    await page.goto(base + '/#/');
    await page.reload();
    await page.waitForSelector('.card img');
    const reached = new Set();
    for (let i = 0; i < 40 && !reached.has('card'); i++) {
      await page.keyboard.press('Tab');
      reached.add(await page.evaluate(() => {
        const e = document.activeElement;
        return e.classList.contains('card') ? 'card' : e.closest('.filters') ? 'filters' : e.tagName.toLowerCase();
      }));
    }
    assert.ok(reached.has('filters') && reached.has('card'), `Tab reached ${[...reached]}`);
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => location.hash.startsWith('#/object/'));
  });

  await step('on a phone (390 px) no page is wider than the screen, and the sky map is read where the finger is', async () => {
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
    const centreOfSky = async (p) => {
      const box = await p.locator('canvas.sky').boundingBox();
      await p.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
      await p.waitForSelector('.sky-hover[data-ra]');
      return [Number(await p.getAttribute('.sky-hover', 'data-ra')), Number(await p.getAttribute('.sky-hover', 'data-dec'))];
    };
    try {
      // A finished run's page too: its scatter, histogram and per-rank bars.
      const runs = await (await fetch(base + '/api/runs')).json();
      const done = runs.find((r) => r.status === 'succeeded');
      assert.ok(done, 'no finished run to show');
      const pages = [...(await everyPage()), [`/#/runs/${done.id}`, '.results .scatter canvas.plot']];
      const wide = [];
      for (const [route, ready] of pages) {
        await phone.goto(base + route);
        await phone.reload();
        await phone.waitForSelector(ready, { timeout: 60000 });
        const width = await phone.evaluate(() => ({
          page: document.documentElement.scrollWidth,
          screen: document.documentElement.clientWidth,
          past: [...document.querySelectorAll('main *, header *')]
            .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
            .slice(0, 3).map((e) => `${e.tagName.toLowerCase()}.${e.getAttribute('class') ?? ''}`),
        }));
        if (width.page > width.screen) wide.push(`${route}: ${width.page} px on ${width.screen} (${width.past.join(', ')})`);
      }
      assert.deepEqual(wide, [], 'pages wider than a phone');
      // The map drawn smaller than its 960 pixels reads the pointer in its own:
      // its centre is the whole sky's, RA 180°, Dec 0°, on a phone too.
      await phone.goto(base + '/#/sky');
      await phone.waitForFunction(() => Number(document.querySelector('.sky-stats')?.dataset.frames) >= 1, null, { timeout: 60000 });
      const [ra, dec] = await centreOfSky(phone);
      assert.ok(Math.abs(ra - 180) < 1 && Math.abs(dec) < 1, `the centre of the map read as RA ${ra}, Dec ${dec} on a phone`);
      await phone.goto(base + '/#/runs/' + done.id);
      await phone.waitForSelector('.results .scatter canvas.plot');
      await phone.screenshot({ path: join(shots, 'phone-run.png'), fullPage: true });
    } finally {
      await phone.close();
    }
  });

  await step('a server that cannot be reached is said with Try again; an explorer from another build says so', async () => {
    const objects = (url) => url.pathname === '/api/objects';
    await page.route(objects, (route) => route.abort('connectionrefused'));
    try {
      await page.goto(base + '/#/');
      await page.reload();
      await page.waitForSelector('.error button.retry', { timeout: 30000 });
      assert.match(await page.textContent('.error'), /server cannot be reached/);
    } finally {
      await page.unroute(objects);
    }
    // Back: asked again without a reload.
    await page.click('.error button.retry');
    await page.waitForSelector('.card img', { timeout: 30000 });
    assert.equal(await page.locator('button.retry').count(), 0);
    assert.equal(await page.locator('.build-mismatch').count(), 0, 'the same build flagged as another');
    // A server built from other sources than this explorer (its types may differ).
    const health = (url) => url.pathname === '/api/health';
    await page.route(health, (route) => route.fulfill({ status: 200, contentType: 'application/json',
      body: JSON.stringify({ objects: 1, version: '0.0.1', api: '0123456789abcdef' }) }));
    try {
      await page.reload();
      await page.waitForSelector('.build-mismatch');
      assert.match(await page.textContent('.build-mismatch'), /built from other sources than the server it talks to \(cosmicai 0\.0\.1\).*make serve/);
    } finally {
      await page.unroute(health);
    }
  });

  await step('serve --archive: an object without a cutout gets its real image from the SDSS archive', async () => {
    // A local archive: the bundled field's frames at the Science Archive Server's layout.
    const field = join(root, 'assets/fields/2820-3-0122');
    const archive = http.createServer((req, res) => {
      const m = req.url.match(/^\/301\/2820\/3\/(frame-[ugriz]-002820-3-0122\.fits\.bz2)$/);
      if (!m) { res.writeHead(404).end(); return; }
      res.writeHead(200, { 'content-type': 'application/x-bzip2' });
      createReadStream(join(field, m[1])).pipe(res);
    });
    await new Promise((ok) => archive.listen(0, '127.0.0.1', ok));
    // The bundled catalogs hold no object on that field: a catalog with one galaxy there.
    const dir = mkdtempSync(join(tmpdir(), 'cosmicai-e2e-archive-'));
    for (const d of ['real', 'synthetic']) cpSync(join(data, d), join(dir, d), { recursive: true });
    const csv = join(dir, 'objects.csv');
    writeFileSync(csv, 'objid,ra,dec,u,g,r,i,z,run,rerun,camcol,field,specobjid,class,redshift\n'
      + '1,38.30,-0.10,20.1,19.0,18.2,17.8,17.5,2820,301,3,122,0,GALAXY,0.11\n');
    execFileSync(bin, ['catalog', 'import', csv, '--out', join(dir, 'catalog')], { stdio: 'ignore' });
    const second = serve(dir, ['--archive', `http://127.0.0.1:${archive.address().port}`, '--archive-catalog', csv], 'ignore');
    try {
      const url = await second.url;
      const listed = await (await fetch(`${url}/api/objects?class=GALAXY&provenance=real&has_image=false`)).json();
      assert.equal(listed.total, 1, JSON.stringify(listed));
      const id = listed.objects[0].id;
      await page.goto(`${url}/#/object/${id}`);
      // A spinner while the server fetches the five frames and cuts; then the image.
      await page.waitForSelector('canvas.composite', { timeout: 120000 });
      const detail = await (await fetch(`${url}/api/objects/${id}`)).json();
      assert.equal(detail.object.has_image, true);
      assert.equal(detail.object.provenance, 'real');
      const lit = await page.evaluate(() => {
        const c = document.querySelector('canvas.composite');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) n += d[i] + d[i + 1] + d[i + 2] > 30;
        return n;
      });
      assert.ok(lit > 100, `${lit} lit pixels in the fetched cutout`);
      await page.screenshot({ path: join(shots, 'archive-object.png'), fullPage: true });
    } finally {
      await stop(second.child);
      archive.close();
      removeDir(dir);
    }
  });

  await step('API errors are shown as messages', async () => {
    await page.goto(base + '/#/object/123');
    await page.waitForSelector('.error');
    assert.match(await page.textContent('.error'), /no such object/);
    await page.goto(base + '/#/runs');
    await page.fill('input[name=world_size]', '0');
    await page.click('button.launch');
    await page.waitForSelector('.error');
    assert.match(await page.textContent('.error'), /world_size/);
    await page.screenshot({ path: join(shots, 'error.png') });
  });
  // Refused requests the steps make on purpose (404, 409, 422, a SkyServer that
  // refuses) log failed loads; a server error (5xx) never may.
  assert.deepEqual(consoleErrors.filter((e) => !/Failed to load resource/.test(e) || /status of 5\d\d/.test(e)), [], 'console errors');
  console.log(`e2e: all passed; screenshots in ${shots}`);
} finally {
  await browser.close();
  await stop(server.child);
  if (ownData) removeDir(data);
}
