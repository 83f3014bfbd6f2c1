/*
 * cnn-edge in Node.js: load the ONNX model with onnxruntime-node, decode PNG, JPEG, WebP, GIF,
 * TIFF (sharp) and BMP (bmp-js), preprocess them exactly as Python does (../../cnn_edge/web/preprocess.js, the
 * same file the browser demo uses), and classify.
 */
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');
const bmp = require('bmp-js');
const sharp = require('sharp');
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

// The same pixel limit as Python's default (--max-pixels): checked from the header, before any
// pixel is decoded, so a 900-megapixel file costs nothing.
const MAX_PIXELS = 40000000;
// The formats Python reads that a browser-grade decoder also reads: sharp (libvips, its prebuilt
// binaries from the npm registry) for these, bmp-js for BMP. Anything else (SVG, HEIF...) is
// refused, as Python refuses it.
const SHARP_FORMATS = ['png', 'jpeg', 'webp', 'gif', 'tiff'];

function tooLarge(width, height) {
  return new Error(`image is ${width}x${height} = ${(width * height / 1e6).toFixed(1)} Mpixels, above the limit of ${MAX_PIXELS / 1e6} Mpixels`);
}

/** A BMP -> {rgba, width, height}: bmp-js gives ABGR bytes, and no alpha below 32 bits. */
function decodeBmp(buf) {
  if (buf.length < 26) throw new Error('truncated BMP header');
  const width = Math.abs(buf.readInt32LE(18)), height = Math.abs(buf.readInt32LE(22));
  if (width * height > MAX_PIXELS) throw tooLarge(width, height);
  const bitsPerPixel = buf.length >= 30 ? buf.readUInt16LE(28) : 0;
  const img = bmp.decode(buf);
  const rgba = new Uint8Array(img.width * img.height * 4);
  for (let i = 0; i < rgba.length; i += 4) {
    rgba[i] = img.data[i + 3]; rgba[i + 1] = img.data[i + 2]; rgba[i + 2] = img.data[i + 1];
    rgba[i + 3] = bitsPerPixel === 32 ? img.data[i] : 255;
  }
  return { rgba, width: img.width, height: img.height, orientation: 1 };
}

/** Any supported image file -> {rgba, width, height, orientation}; throws with a reason. */
async function decodeFile(file) {
  const stat = fs.statSync(file);
  if (!stat.isFile()) throw new Error('not a regular file');
  if (stat.size === 0) throw new Error('empty file (0 bytes)');
  const buf = fs.readFileSync(file);
  if (buf.toString('latin1', 0, 2) === 'BM') return decodeBmp(buf);
  const options = { limitInputPixels: MAX_PIXELS, failOn: 'error' };
  let meta;
  try {
    meta = await sharp(buf, options).metadata();
  } catch (e) {
    if (/pixel limit/i.test(e.message)) throw new Error(`image above the limit of ${MAX_PIXELS / 1e6} Mpixels`);
    throw new Error('not an image in a format cnn-edge reads');
  }
  if (!SHARP_FORMATS.includes(meta.format)) throw new Error(`not an image in a format cnn-edge reads (${meta.format})`);
  if (meta.width * meta.height > MAX_PIXELS) throw tooLarge(meta.width, meta.height);
  const { data, info } = await sharp(buf, options).toColourspace('srgb').ensureAlpha()
    .raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  return { rgba: data, width: info.width, height: info.height, orientation: meta.orientation || 1 };
}

/** An image file -> { pixels: Float32Array(784), blank }: pixel limit, decode, EXIF orientation,
 * then the preprocessing Python runs (throws, with a reason, on a file it cannot use). */
async function preprocessFile(file) {
  const img = await decodeFile(file);
  const upright = orient(img.rgba, img.width, img.height, img.orientation);
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

module.exports = { EXPORTS, MAX_PIXELS, loadModel, probabilities, decodeFile, preprocessFile, argmax, readVectors, checkVectors };
