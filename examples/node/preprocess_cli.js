#!/usr/bin/env node
/* Print the JavaScript preprocessing of image files as JSON ({path: {pixels, blank}}), so the
 * Python tests can compare it with cnn_edge.preprocess on the same files; a file it cannot use
 * gets {error} instead. */
'use strict';
const { displayName, fileArgs, preprocessFile } = require('./lib');

(async () => {
  const out = {};
  for (const file of fileArgs(process.argv.slice(2))) {
    try {
      const { pixels, blank } = await preprocessFile(file);
      out[displayName(file)] = { pixels: Array.from(pixels), blank };
    } catch (e) {
      out[displayName(file)] = { error: e.message.split('\n')[0] };
    }
  }
  process.stdout.write(JSON.stringify(out));
})();
