// The Node.js CLI end to end: real PNG files in, digits out; bad files get an error line.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync, spawnSync } = require('child_process');
const { PNG } = require('pngjs');
const { readVectors } = require('../lib');

function writePng(file, pixels, invert) {
  const png = new PNG({ width: 28, height: 28 });
  pixels.forEach((v, i) => { const g = invert ? 255 - v : v; png.data.set([g, g, g, 255], 4 * i); });
  fs.writeFileSync(file, PNG.sync.write(png));
}

test('classify.js labels test-vector digits written as PNG, dark on light too', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cnn-edge-node-'));
  const vectors = readVectors().vectors.slice(0, 10);
  const files = vectors.map((v, i) => {
    const file = path.join(dir, `${i}.png`);
    writePng(file, v.pixels, i % 2 === 1);
    return file;
  });
  const out = execFileSync('node', [path.join(__dirname, '..', 'classify.js'), '--json', ...files], { encoding: 'utf8' });
  const rows = out.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepStrictEqual(rows.map((r) => r.prediction), vectors.map((v) => String(v.label)));
  assert.deepStrictEqual(Object.keys(rows[0]), ['path', 'prediction', 'confidence', 'top_k', 'error', 'flag']);
  assert.deepStrictEqual(rows.map((r) => r.flag), vectors.map(() => null)); // MNIST's own digits, confidently read
});

test('classify.js reports a broken file and exits 3', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cnn-edge-node-'));
  fs.writeFileSync(path.join(dir, 'bad.png'), 'not a png');
  const r = spawnSync('node', [path.join(__dirname, '..', 'classify.js'), path.join(dir, 'bad.png')], { encoding: 'utf8' });
  assert.strictEqual(r.status, 3);
  assert.match(r.stdout, /error:/);
});
