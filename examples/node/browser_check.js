#!/usr/bin/env node
/*
 * Drive the cnn-edge demo page in headless Chromium (Debian's /usr/bin/chromium, via
 * playwright-core: no browser download): wait for the test-vector verdict, then draw digits
 * stroke by stroke with the mouse and read what the page predicts. Prints one JSON object.
 *
 *   node browser_check.js http://127.0.0.1:8000/ [--screenshot out.png]
 */
'use strict';
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// Strokes on the 280x280 pad, as a person would draw them.
const ellipse = (cx, cy, rx, ry) => Array.from({ length: 41 }, (_, i) => [cx + rx * Math.sin((i / 40) * 2 * Math.PI), cy - ry * Math.cos((i / 40) * 2 * Math.PI)]);
const DIGITS = {
  0: [ellipse(140, 140, 55, 85)],
  1: [[[145, 45], [140, 235]]],
  4: [[[175, 235], [175, 45], [80, 170], [215, 170]]],
  7: [[[75, 60], [205, 60], [125, 235]]],
};

async function draw(page, strokes) {
  const box = await page.locator('#pad').boundingBox();
  for (const stroke of strokes) {
    await page.mouse.move(box.x + stroke[0][0], box.y + stroke[0][1]);
    await page.mouse.down();
    for (const [x, y] of stroke.slice(1)) await page.mouse.move(box.x + x, box.y + y, { steps: 12 });
    await page.mouse.up();
  }
}

async function main() {
  const url = process.argv[2];
  const shot = process.argv.indexOf('--screenshot') > 0 ? process.argv[process.argv.indexOf('--screenshot') + 1] : null;
  const browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const errors = [];
  const external = [];
  try {
    const page = await browser.newPage();
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('request', (r) => { if (!r.url().startsWith(new URL(url).origin)) external.push(r.url()); });
    await page.goto(url);
    await page.waitForFunction(() => window.cnnEdge && (window.cnnEdge.ready || window.cnnEdge.error), null, { timeout: 60000 });
    const state = await page.evaluate(() => window.cnnEdge);
    const drawn = [];
    for (const [digit, strokes] of Object.entries(DIGITS)) {
      await page.click('#clear');
      await draw(page, strokes);
      await page.waitForTimeout(300); // the page predicts on the next animation frame
      const p = await page.evaluate(() => window.cnnEdge.prediction);
      drawn.push({ digit: Number(digit), predicted: p ? p.label : null, confidence: p ? Math.max(...p.probabilities) : null });
      if (shot && digit === '7') await page.screenshot({ path: shot });
    }
    const verdict = await page.locator('#vectors').getAttribute('data-status');
    console.log(JSON.stringify({ ...state, verdict, drawn, errors, external }));
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error(`error: ${e.message}`); process.exit(2); });
