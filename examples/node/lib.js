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
const { argmax, judge, packPixels } = require('../../cnn_edge/web/vectors.js');

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

function readVectors(file = path.join(EXPORTS, 'test_vectors.json')) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** Run the test vectors; judge them by the file's tolerance for `precision` (fp32 or int8). */
async function checkVectors(session, vectors, precision) {
  const { n, agreement, maxAbsDiff, pass } = judge(vectors, await probabilities(session, packPixels(vectors), vectors.vectors.length), precision);
  return { n, agreement, maxAbsDiff, pass, precision };
}

module.exports = { EXPORTS, loadModel, probabilities, preprocessPng, argmax, readVectors, checkVectors };
