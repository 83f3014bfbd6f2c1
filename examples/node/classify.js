#!/usr/bin/env node
/*
 * Classify image files (PNG, JPEG, WebP, GIF, TIFF, BMP) with the cnn-edge model in Node.js (no Python):
 *
 *   node classify.js [--model ../../exports/mnist_cnn.onnx] [--json] digit.png ...
 *
 * Prints one line per file (path, digit, confidence), or JSON lines with --json. Exit code 0
 * when every file was classified, 3 when some could not be (their line says why), 2 on bad usage.
 */
'use strict';
const path = require('path');
const { EXPORTS, loadModel, probabilities, preprocessFile } = require('./lib');

const TOP_K = 3; // as cnn-edge predict's default --top-k

async function main(argv) {
  let model = path.join(EXPORTS, 'mnist_cnn.onnx');
  let json = false;
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--model') model = argv[++i];
    else if (argv[i] === '--json') json = true;
    else if (argv[i] === '--help' || argv[i] === '-h') { console.log('usage: node classify.js [--model M.onnx] [--json] IMAGE ...'); return 0; }
    else files.push(argv[i]);
  }
  if (!files.length) { console.error('error: give image files to classify, e.g. node classify.js ../digits/typed_font_04703_3.png'); return 2; }
  let session;
  try { session = await loadModel(model); } catch (e) { console.error(`error: cannot load model ${model}: ${e.message.split('\n')[0]}`); return 2; }
  let failed = 0;
  for (const file of files) {
    let row;
    try {
      const { pixels, blank } = await preprocessFile(file);
      if (blank) throw new Error('blank image: no digit stands out from the background');
      const probs = Array.from(await probabilities(session, pixels, 1));
      // The same fields and types as a row of Python's JSONL (cnn-edge predict -o rows.jsonl):
      // labels are strings, probabilities are rounded to 6 decimals, top_k lists the 3 likeliest.
      const order = probs.map((p, i) => i).sort((a, b) => probs[b] - probs[a] || a - b).slice(0, TOP_K);
      const round6 = (p) => Math.round(p * 1e6) / 1e6;
      row = { path: file, prediction: String(order[0]), confidence: round6(probs[order[0]]),
              top_k: order.map((i) => ({ label: String(i), probability: round6(probs[i]) })), error: null };
    } catch (e) {
      failed++;
      row = { path: file, prediction: null, confidence: null, top_k: [],
              error: e.code === 'ENOENT' ? 'file not found' : e.message };
    }
    if (json) console.log(JSON.stringify(row));
    else console.log(row.error ? `${row.path}\t-\terror: ${row.error}` : `${row.path}\t${row.prediction}\t${row.confidence.toFixed(4)}`);
  }
  return failed ? 3 : 0;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
