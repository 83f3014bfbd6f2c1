#!/usr/bin/env node
/*
 * Classify PNG files with the cnn-edge model in Node.js (no Python):
 *
 *   node classify.js [--model ../../exports/mnist_cnn.onnx] [--json] digit.png ...
 *
 * Prints one line per file (path, digit, confidence), or JSON lines with --json. Exit code 0
 * when every file was classified, 3 when some could not be (their line says why), 2 on bad usage.
 */
'use strict';
const path = require('path');
const { EXPORTS, loadModel, probabilities, preprocessPng, argmax } = require('./lib');

async function main(argv) {
  let model = path.join(EXPORTS, 'mnist_cnn.onnx');
  let json = false;
  const files = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--model') model = argv[++i];
    else if (argv[i] === '--json') json = true;
    else if (argv[i] === '--help' || argv[i] === '-h') { console.log('usage: node classify.js [--model M.onnx] [--json] FILE.png ...'); return 0; }
    else files.push(argv[i]);
  }
  if (!files.length) { console.error('error: give PNG files to classify, e.g. node classify.js digit.png'); return 2; }
  let session;
  try { session = await loadModel(model); } catch (e) { console.error(`error: cannot load model ${model}: ${e.message.split('\n')[0]}`); return 2; }
  let failed = 0;
  for (const file of files) {
    let row;
    try {
      const { pixels, blank } = preprocessPng(file);
      if (blank) throw new Error('blank image: no digit stands out from the background');
      const probs = await probabilities(session, pixels, 1);
      const digit = argmax(probs);
      row = { path: file, prediction: digit, confidence: probs[digit], error: null };
    } catch (e) {
      failed++;
      row = { path: file, prediction: null, confidence: null, error: e.code === 'ENOENT' ? 'file not found' : e.message };
    }
    if (json) console.log(JSON.stringify(row));
    else console.log(row.error ? `${row.path}\t-\terror: ${row.error}` : `${row.path}\t${row.prediction}\t${row.confidence.toFixed(4)}`);
  }
  return failed ? 3 : 0;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
