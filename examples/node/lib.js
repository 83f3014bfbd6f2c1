/*
 * cnn-edge in Node.js: load the ONNX model with onnxruntime-node, decode PNGs with pngjs (pure
 * JavaScript), preprocess them exactly as Python does (../../cnn_edge/web/preprocess.js, the
 * same file the browser demo uses), and classify.
 */
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');
const { PNG } = require('pngjs');
const { preprocessRGBA } = require('../../cnn_edge/web/preprocess.js');

const INPUT = 'pixels'; // the model's I/O contract: float32 [batch, 1, 28, 28], raw 0..255
const EXPORTS = path.resolve(__dirname, '..', '..', 'exports');

async function loadModel(file) {
  return ort.InferenceSession.create(file, { executionProviders: ['cpu'] });
}

/** Probabilities for `batch` model inputs packed in one Float32Array (batch * 784). */
async function probabilities(session, pixels, batch) {
  const out = await session.run({ [INPUT]: new ort.Tensor('float32', pixels, [batch, 1, 28, 28]) });
  return out.probabilities.data;
}

/** A PNG file -> { pixels: Float32Array(784), blank } (throws on a file that is not a PNG). */
function preprocessPng(file) {
  const png = PNG.sync.read(fs.readFileSync(file));
  return preprocessRGBA(png.data, png.width, png.height);
}

function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

function readVectors(file = path.join(EXPORTS, 'test_vectors.json')) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** Run the test vectors; judge them by the file's tolerance for `precision` (fp32 or int8). */
async function checkVectors(session, vectors, precision) {
  const n = vectors.vectors.length;
  const pixels = new Float32Array(n * 784);
  vectors.vectors.forEach((v, i) => pixels.set(v.pixels, i * 784));
  const probs = await probabilities(session, pixels, n);
  let agree = 0, maxAbsDiff = 0;
  vectors.vectors.forEach((v, i) => {
    const mine = probs.slice(i * 10, i * 10 + 10);
    if (argmax(mine) === argmax(v.probabilities)) agree++;
    for (let k = 0; k < 10; k++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(mine[k] - v.probabilities[k]));
  });
  const tol = vectors.tolerance[precision];
  const agreement = agree / n;
  const pass = agreement >= tol.min_top1_agreement &&
    (tol.max_abs_diff_probabilities === null || maxAbsDiff <= tol.max_abs_diff_probabilities);
  return { n, agreement, maxAbsDiff, pass, precision };
}

module.exports = { EXPORTS, loadModel, probabilities, preprocessPng, argmax, readVectors, checkVectors };
