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
const { orient, preprocessRGBA } = require('../../cnn_edge/web/preprocess.js');
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

// The same pixel limit as Python's default (--max-pixels): checked from the PNG header, before
// any pixel is decoded, so a 900-megapixel file costs nothing.
const MAX_PIXELS = 40000000;
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Width and height from a PNG's IHDR chunk (throws when the file is not a PNG). */
function pngSize(buf) {
  if (buf.length < 24 || !buf.subarray(0, 8).equals(PNG_SIGNATURE) || buf.toString('latin1', 12, 16) !== 'IHDR') {
    throw new Error('not a PNG file (this example decodes PNG only)');
  }
  return [buf.readUInt32BE(16), buf.readUInt32BE(20)];
}

/** EXIF orientation (1..8) from a PNG's eXIf chunk, as Pillow reads it; 1 when absent or unreadable. */
function exifOrientation(buf) {
  try {
    let pos = 8;
    while (pos + 8 <= buf.length) {
      const length = buf.readUInt32BE(pos), type = buf.toString('latin1', pos + 4, pos + 8);
      if (type === 'eXIf') return tiffOrientation(buf.subarray(pos + 8, pos + 8 + length));
      if (type === 'IEND') break;
      pos += 12 + length;
    }
  } catch (e) { /* malformed chunks: no orientation, as Python ignores unreadable EXIF */ }
  return 1;
}

function tiffOrientation(t) {
  const little = t.toString('latin1', 0, 2) === 'II';
  if (!little && t.toString('latin1', 0, 2) !== 'MM') return 1;
  const u16 = (o) => (little ? t.readUInt16LE(o) : t.readUInt16BE(o));
  const u32 = (o) => (little ? t.readUInt32LE(o) : t.readUInt32BE(o));
  const ifd = u32(4);
  for (let i = 0, n = u16(ifd); i < n; i++) {
    const entry = ifd + 2 + 12 * i;
    if (u16(entry) === 0x0112) return u16(entry + 8);
  }
  return 1;
}

/** A PNG file -> { pixels: Float32Array(784), blank }: pixel limit, decode, EXIF orientation,
 * then the preprocessing Python runs (throws, with a reason, on a file it cannot use). */
function preprocessPng(file) {
  const buf = fs.readFileSync(file);
  const [width, height] = pngSize(buf);
  if (width * height > MAX_PIXELS) {
    throw new Error(`image is ${width}x${height} = ${(width * height / 1e6).toFixed(1)} Mpixels, above the limit of ${MAX_PIXELS / 1e6} Mpixels`);
  }
  const png = PNG.sync.read(buf);
  const upright = orient(png.data, png.width, png.height, exifOrientation(buf));
  return preprocessRGBA(upright.rgba, upright.width, upright.height);
}

function readVectors(file = path.join(EXPORTS, 'test_vectors.json')) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** Run the test vectors; judge them by the file's tolerance for `precision` (fp32 or int8). */
async function checkVectors(session, vectors, precision) {
  const { n, agreement, maxAbsDiff, pass } = judge(vectors, await probabilities(session, packPixels(vectors), vectors.vectors.length), precision);
  return { n, agreement, maxAbsDiff, pass, precision };
}

module.exports = { EXPORTS, MAX_PIXELS, loadModel, probabilities, preprocessPng, argmax, readVectors, checkVectors };
