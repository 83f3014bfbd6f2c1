#!/usr/bin/env node
/* Print the JavaScript preprocessing of image files as JSON ({path: {pixels, blank}}), so the
 * Python tests can compare it with cnn_edge.preprocess on the same files. */
'use strict';
const { preprocessFile } = require('./lib');

(async () => {
  const out = {};
  for (const file of process.argv.slice(2)) {
    const { pixels, blank } = await preprocessFile(file);
    out[file] = { pixels: Array.from(pixels), blank };
  }
  process.stdout.write(JSON.stringify(out));
})();
