#!/usr/bin/env node
/* Print the JavaScript preprocessing of image files as JSON ({path: {pixels, blank, error}}), so
 * the Python tests can compare it with cnn_edge.preprocess on the same files; a file it cannot use
 * gets {error} alone. `--preprocessing mnist-v2` (first) picks the version; mnist-v1 otherwise. */
'use strict';
const { displayName, fileArgs, preprocessFile } = require('./lib');

(async () => {
  const out = {};
  let args = process.argv.slice(2), version = 'mnist-v1';
  if (args[0] === '--preprocessing') { version = args[1]; args = args.slice(2); }
  for (const file of fileArgs(args)) {
    try {
      const { pixels, blank, error } = await preprocessFile(file, {}, version);
      out[displayName(file)] = { pixels: Array.from(pixels), blank, error };
    } catch (e) {
      out[displayName(file)] = { error: e.message.split('\n')[0] };
    }
  }
  process.stdout.write(JSON.stringify(out));
})();
