/*
 * Judge a runtime's outputs on the cnn-edge test vectors (exports/test_vectors.json) by the file's
 * own tolerance: the one check the browser demo and the Node.js example share, as
 * cnn_edge/vectors.py does in Python. A browser global (window.cnnEdgeVectors) and a CommonJS module.
 */
(function (root, factory) {
  if (typeof module === 'object' && module.exports) module.exports = factory();
  else root.cnnEdgeVectors = factory();
})(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  function argmax(values) {
    let best = 0;
    for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
    return best;
  }

  /** probs: the runtime's probabilities for every vector, packed (n * 10); precision: fp32 | int8. */
  function judge(vectors, probs, precision) {
    const n = vectors.vectors.length;
    let agree = 0, maxAbsDiff = 0;
    vectors.vectors.forEach((v, i) => {
      const mine = probs.slice(i * 10, i * 10 + 10);
      if (argmax(mine) === argmax(v.probabilities)) agree++;
      for (let k = 0; k < 10; k++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(mine[k] - v.probabilities[k]));
    });
    const tolerance = vectors.tolerance[precision];
    const agreement = agree / n;
    const pass = agreement >= tolerance.min_top1_agreement &&
      (tolerance.max_abs_diff_probabilities === null || maxAbsDiff <= tolerance.max_abs_diff_probabilities);
    return { n, agree, agreement, maxAbsDiff, pass, precision, tolerance };
  }

  /** The vectors' pixels packed into one model input (n * 784). */
  function packPixels(vectors) {
    const pixels = new Float32Array(vectors.vectors.length * 784);
    vectors.vectors.forEach((v, i) => pixels.set(v.pixels, i * 784));
    return pixels;
  }

  return { argmax, judge, packPixels };
});
