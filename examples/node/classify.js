#!/usr/bin/env node
/*
 * Classify image files (PNG, JPEG, WebP, GIF, TIFF, BMP) with the cnn-edge model in Node.js (no Python):
 *
 *   node classify.js [--model ../../exports/mnist_cnn.onnx] [--json] [--max-pixels N] [--max-file-bytes N]
 *                    [--preprocessing mnist-v1|mnist-v2] [--flag-below P] digit.png ...
 *
 * --max-pixels and --max-file-bytes are cnn-edge predict's limits, with the same defaults (40
 * Mpixels, 64 MiB): a larger image or file is refused, before it is decoded or read. The
 * preprocessing is the one the model's metadata names, as in Python; --preprocessing picks another
 * (mnist-v2 finds the digit in a cluttered photo, or says in the row that it found no single one).
 *
 * Each row is flagged as cnn-edge predict flags it (low_confidence below --flag-below, default 0.95;
 * unlike_mnist: ../../cnn_edge/web/flags.js with the numbers of ../../cnn_edge/core/flag_rule.json).
 *
 * Prints one line per file (path, digit, confidence, flag), or JSON lines with --json. Exit code 0
 * when every file was classified, 3 when some could not be (their line says why), 2 on bad usage.
 */
'use strict';
const path = require('path');
const { EXPORTS, FLAG_RULE, MAX_FILE_BYTES, MAX_PIXELS, PREPROCESSINGS, displayName, fileArgs, flagOf, loadModel,
  modelPreprocessing, probabilities, preprocessFile } = require('./lib');

const TOP_K = 3; // as cnn-edge predict's default --top-k

/** One line for a file that could not be used. */
function readError(e, file) {
  if (e.code !== 'ENOENT') return e.message.split('\n')[0];
  // A name that is not UTF-8 and could not be recovered as bytes (fileArgs) is not "missing".
  if (typeof file === 'string' && file.includes('\uFFFD')) return 'file not found: its name is not valid UTF-8, which Node.js cannot pass on here; rename it, or use cnn-edge predict';
  return 'file not found';
}

async function main(argv) {
  let model = path.join(EXPORTS, 'mnist_cnn.onnx');
  let json = false;
  let preprocessing = null; // null: the model's own
  let flagBelow = FLAG_RULE.low_confidence_below;
  const limits = { maxPixels: MAX_PIXELS, maxFileBytes: MAX_FILE_BYTES };
  const names = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--model') model = argv[++i];
    else if (argv[i] === '--json') json = true;
    else if (argv[i] === '--preprocessing') {
      preprocessing = argv[++i];
      if (!PREPROCESSINGS.includes(preprocessing)) { console.error(`error: --preprocessing takes ${PREPROCESSINGS.join(' or ')}, got ${preprocessing}`); return 2; }
    }
    else if (argv[i] === '--flag-below') {
      flagBelow = Number(argv[++i]);
      if (!(flagBelow >= 0 && flagBelow <= 1) || argv[i] === undefined || argv[i] === '') { console.error(`error: --flag-below takes a probability between 0 (off) and 1, got ${argv[i]}`); return 2; }
    }
    else if (argv[i] === '--max-pixels' || argv[i] === '--max-file-bytes') {
      const value = Number(argv[++i]);
      if (!Number.isSafeInteger(value) || value < 1) { console.error(`error: ${argv[i - 1]} takes a whole number of at least 1, got ${argv[i]}`); return 2; }
      limits[argv[i - 1] === '--max-pixels' ? 'maxPixels' : 'maxFileBytes'] = value;
    } else if (argv[i] === '--help' || argv[i] === '-h') { console.log('usage: node classify.js [--model M.onnx] [--json] [--max-pixels N] [--max-file-bytes N] [--preprocessing mnist-v1|mnist-v2] [--flag-below P] IMAGE ...'); return 0; }
    else names.push(argv[i]);
  }
  const files = fileArgs(names);
  if (!files.length) { console.error('error: give image files to classify, e.g. node classify.js ../digits/typed_font_04703_3.png'); return 2; }
  let session;
  try { session = await loadModel(model); } catch (e) { console.error(`error: cannot load model ${model}: ${e.message.split('\n')[0]}`); return 2; }
  try { preprocessing = preprocessing || modelPreprocessing(model); } catch (e) { console.error(`error: ${e.message}`); return 2; }
  let failed = 0;
  for (const file of files) {
    let row;
    try {
      const { pixels, error } = await preprocessFile(file, limits, preprocessing);
      if (error) throw new Error(error); // blank, or (mnist-v2) no single digit: the row says which
      const probs = Array.from(await probabilities(session, pixels, 1));
      // The same fields and types as a row of Python's JSONL (cnn-edge predict -o rows.jsonl):
      // labels are strings, probabilities are rounded to 6 decimals, top_k lists the 3 likeliest.
      const order = probs.map((p, i) => i).sort((a, b) => probs[b] - probs[a] || a - b).slice(0, TOP_K);
      const round6 = (p) => Math.round(p * 1e6) / 1e6;
      row = { path: displayName(file), prediction: String(order[0]), confidence: round6(probs[order[0]]),
              top_k: order.map((i) => ({ label: String(i), probability: round6(probs[i]) })), error: null,
              flag: flagOf(pixels, probs, flagBelow) };
    } catch (e) {
      failed++;
      row = { path: displayName(file), prediction: null, confidence: null, top_k: [], error: readError(e, file), flag: null };
    }
    if (json) console.log(JSON.stringify(row));
    else console.log(row.error ? `${row.path}\t-\terror: ${row.error}` : `${row.path}\t${row.prediction}\t${row.confidence.toFixed(4)}${row.flag ? `\tflag: ${row.flag}` : ''}`);
  }
  return failed ? 3 : 0;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
