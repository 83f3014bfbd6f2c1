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
const { PREPROCESSINGS, orient, preprocessGrey, preprocessRGBA } = require('../../cnn_edge/web/preprocess.js');
const { argmax, judge, packPixels } = require('../../cnn_edge/web/vectors.js');
const { rowFlag } = require('../../cnn_edge/web/flags.js');

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
// The same file-size limit as Python's default (--max-file-bytes, cnn_edge/core/constants.py
// DEFAULT_MAX_FILE_BYTES): checked from the file's size before any byte is read, since the file is
// read whole; a 1 GiB file costs nothing.
const MAX_FILE_BYTES = 64 * 1024 * 1024;
// The formats Python reads that a browser-grade decoder also reads: sharp (libvips, its prebuilt
// binaries from the npm registry) for these, bmp-js for BMP. Anything else (SVG, HEIF...) is
// refused, as Python refuses it.
const SHARP_FORMATS = ['png', 'jpeg', 'webp', 'gif', 'tiff'];

function tooLarge(width, height, maxPixels) {
  return new Error(`image is ${width}x${height} = ${(width * height / 1e6).toFixed(1)} Mpixels, above the limit of ${maxPixels / 1e6} Mpixels (--max-pixels)`);
}

/** Python's message for a file above the size limit (images.py _check_file_size), word for word. */
function tooBig(size, maxFileBytes) {
  const mib = (n) => n / 2 ** 20;
  return new Error(`file is ${size.toLocaleString('en-US')} bytes (${mib(size).toFixed(1)} MiB), above the limit of ` +
    `${maxFileBytes.toLocaleString('en-US')} bytes (${mib(maxFileBytes)} MiB; --max-file-bytes)`);
}

/** A BMP -> {rgba, width, height}. bmp-js gives ABGR bytes for plain 32-bit files and BGRA for
 * bit-field ones; alpha is read where Pillow reads it (a 32-bit bit-field file with an alpha mask),
 * never from a plain 32-bit file's fourth byte, which Pillow and most writers leave as padding. */
function decodeBmp(buf, maxPixels) {
  if (buf.length < 34) throw new Error('truncated BMP header');
  const width = Math.abs(buf.readInt32LE(18)), height = Math.abs(buf.readInt32LE(22));
  if (width * height > maxPixels) throw tooLarge(width, height, maxPixels);
  const bitsPerPixel = buf.readUInt16LE(28), compression = buf.readUInt32LE(30);
  let order = [3, 2, 1, -1]; // source byte of R, G, B, A in bmp-js's output; -1: opaque
  if (bitsPerPixel === 32 && compression === 3) {
    if (buf.length < 70) throw new Error('truncated BMP header');
    const masks = [54, 58, 62, 66].map((o) => buf.readUInt32LE(o));
    if (masks[0] !== 0xff0000 || masks[1] !== 0xff00 || masks[2] !== 0xff || ![0, 0xff000000].includes(masks[3])) {
      throw new Error('cannot decode the image (a 32-bit BMP with bit fields other than BGRA/BGRX)');
    }
    order = [2, 1, 0, masks[3] ? 3 : -1];
  }
  const img = bmp.decode(buf);
  const rgba = new Uint8Array(img.width * img.height * 4);
  for (let i = 0; i < rgba.length; i += 4) {
    for (let c = 0; c < 4; c++) rgba[i + c] = order[c] < 0 ? 255 : img.data[i + order[c]];
  }
  return { rgba, width: img.width, height: img.height, orientation: 1 };
}

/** A one-band float TIFF (Pillow's mode "F") -> grey Float64Array, upright, by Python's rule
 * (images.py _opaque_grey): NaN or infinite values refused; values up to 1 are scaled by 255,
 * others kept as they are. */
async function decodeFloatGrey(buf, options, meta) {
  if (meta.channels !== 1) throw new Error(`cannot decode the image (a float TIFF with ${meta.channels} samples per pixel)`);
  const { data, info } = await sharp(buf, options).autoOrient().toColourspace('b-w').raw({ depth: 'float' })
    .toBuffer({ resolveWithObject: true });
  const values = new Float32Array(data.buffer, data.byteOffset, data.length / 4);
  let max = -Infinity;
  for (const v of values) {
    if (!Number.isFinite(v)) throw new Error('the image holds NaN or infinite pixel values');
    if (v > max) max = v;
  }
  const scale = max <= 1 ? 255 : 1;
  return { grey: Float64Array.from(values, (v) => Math.fround(v * scale)), width: info.width, height: info.height };
}

/** The file's bytes, after the checks Python makes first: a regular file, not empty, within the
 * size limit (before any byte is read). `file` is a string or a Buffer (a name that is not UTF-8). */
function readImageFile(file, maxFileBytes) {
  const stat = fs.statSync(file);
  if (!stat.isFile()) throw new Error('not a regular file');
  if (stat.size === 0) throw new Error('empty file (0 bytes)');
  if (stat.size > maxFileBytes) throw tooBig(stat.size, maxFileBytes);
  return fs.readFileSync(file);
}

/** Any supported image file -> {rgba, width, height, orientation} or, for a float TIFF,
 * {grey, width, height} already upright; throws with a reason. */
async function decodeFile(file, { maxPixels = MAX_PIXELS, maxFileBytes = MAX_FILE_BYTES } = {}) {
  const buf = readImageFile(file, maxFileBytes);
  if (buf.toString('latin1', 0, 2) === 'BM') return decodeBmp(buf, maxPixels);
  const options = { limitInputPixels: maxPixels, failOn: 'error' };
  let meta;
  try {
    meta = await sharp(buf, options).metadata();
  } catch (e) {
    if (/pixel limit/i.test(e.message)) throw new Error(`image above the limit of ${maxPixels / 1e6} Mpixels (--max-pixels)`);
    throw new Error('not an image in a format cnn-edge reads');
  }
  if (!SHARP_FORMATS.includes(meta.format)) throw new Error(`not an image in a format cnn-edge reads (${meta.format})`);
  if (meta.width * meta.height > maxPixels) throw tooLarge(meta.width, meta.height, maxPixels);
  if (meta.depth === 'float' || meta.depth === 'double') return decodeFloatGrey(buf, options, meta);
  const { data, info } = await sharp(buf, options).toColourspace('srgb').ensureAlpha()
    .raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  return { rgba: data, width: info.width, height: info.height, orientation: meta.orientation || 1 };
}

/** Command-line arguments as file names: an argument that is not valid UTF-8 reaches
 * process.argv with U+FFFD in place of its bytes, a name no file has; on Linux its true bytes
 * are read back from /proc/self/cmdline and returned as a Buffer (fs takes Buffer paths). */
function fileArgs(args) {
  if (!args.some((a) => a.includes('\uFFFD'))) return args;
  let raw;
  try {
    raw = fs.readFileSync('/proc/self/cmdline');
  } catch (e) {
    return args;
  }
  const parts = [];
  for (let start = 0; start < raw.length;) {
    const end = raw.indexOf(0, start);
    parts.push(raw.subarray(start, end < 0 ? raw.length : end));
    start = end < 0 ? raw.length : end + 1;
  }
  const tail = parts.slice(parts.length - args.length); // the user's arguments end the command line
  if (tail.length !== args.length) return args;
  return args.map((a, i) => (a.includes('\uFFFD') && tail[i].toString('utf8') === a ? Buffer.from(tail[i]) : a));
}

/** A file name to print: a Buffer (not UTF-8) as Node decodes it, U+FFFD for the bad bytes. */
function displayName(file) {
  return Buffer.isBuffer(file) ? file.toString('utf8') : file;
}

/** An image file -> { pixels: Float32Array(784), blank, error }: the size and pixel limits, decode,
 * EXIF orientation, then the preprocessing Python runs, by `version` (the model's: modelPreprocessing)
 * (throws, with a reason, on a file it cannot use; `error` is the reason there is no digit to read).
 * `limits`: { maxPixels, maxFileBytes }, Python's defaults when left out. */
async function preprocessFile(file, limits = {}, version = 'mnist-v1') {
  const img = await decodeFile(file, limits);
  if (img.grey) return preprocessGrey(img.grey, img.width, img.height, version);
  const upright = orient(img.rgba, img.width, img.height, img.orientation);
  return preprocessRGBA(upright.rgba, upright.width, upright.height, version);
}

/** The ONNX model's metadata_props (ModelProto field 14: key 1, value 2), read from its protobuf
 * bytes without a protobuf library: onnxruntime-node does not expose them. */
function modelMetadata(file) {
  const buf = fs.readFileSync(file);
  const varint = (at) => {
    let value = 0, scale = 1, i = at;
    for (;;) {
      if (i >= buf.length) throw new Error(`${file}: not an ONNX model (truncated protobuf)`);
      const b = buf[i++];
      value += (b & 0x7f) * scale;
      scale *= 128;
      if (b < 0x80) return [value, i];
    }
  };
  const fields = (start, end, visit) => {
    let at = start;
    while (at < end) {
      const [tag, next] = varint(at);
      const field = Math.floor(tag / 8), wire = tag % 8;
      at = next;
      if (wire === 0) at = varint(at)[1];
      else if (wire === 1) at += 8;
      else if (wire === 5) at += 4;
      else if (wire === 2) { const [len, body] = varint(at); visit(field, body, body + len); at = body + len; }
      else throw new Error(`${file}: not an ONNX model (protobuf wire type ${wire})`);
    }
  };
  const props = {};
  fields(0, buf.length, (field, start, end) => {
    if (field !== 14) return;
    const entry = {};
    fields(start, end, (f, a, b) => { if (f === 1 || f === 2) entry[f] = buf.toString('utf8', a, b); });
    if (entry[1] !== undefined) props[entry[1]] = entry[2] || '';
  });
  return props;
}

/** The preprocessing the model's metadata names (mnist-v1 for a model without the key), as
 * Python's Predictor reads it; a name this port does not know is refused. */
function modelPreprocessing(file) {
  const name = modelMetadata(file)['cnn_edge.preprocessing'] || 'mnist-v1';
  if (!PREPROCESSINGS.includes(name)) throw new Error(`${file} asks for preprocessing ${JSON.stringify(name)}, which this cnn-edge does not know (it knows ${PREPROCESSINGS.join(', ')})`);
  return name;
}

// Which rows are flagged for a person (low_confidence, unlike_mnist): the rule's numbers, from the
// file Python reads them from (cnn_edge/core/flag_rule.py), so both flag the same rows.
const FLAG_RULE = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'cnn_edge', 'core', 'flag_rule.json'), 'utf8'));

/** A classified row's flag (null: none), as Python's predict writes it: its 784 inputs and its
 * probabilities; `below`: --flag-below (default: the rule's). */
function flagOf(pixels, probs, below = FLAG_RULE.low_confidence_below) {
  return rowFlag(pixels, probs, FLAG_RULE, below);
}

function readVectors(file = path.join(EXPORTS, 'test_vectors.json')) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** Run the test vectors; judge them by the file's tolerance for `precision` (fp32 or int8). */
async function checkVectors(session, vectors, precision) {
  const { n, agreement, maxAbsDiff, pass } = judge(vectors, await probabilities(session, packPixels(vectors), vectors.vectors.length), precision);
  return { n, agreement, maxAbsDiff, pass, precision };
}

module.exports = { EXPORTS, MAX_PIXELS, MAX_FILE_BYTES, PREPROCESSINGS, loadModel, probabilities, decodeFile, preprocessFile,
  modelMetadata, modelPreprocessing, fileArgs, displayName, argmax, readVectors, checkVectors, FLAG_RULE, flagOf };
