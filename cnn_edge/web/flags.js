/*
 * cnn-edge's row flags in JavaScript: the same rule, step for step, as cnn_edge/runtime/flags.py,
 * with the numbers of cnn_edge/core/flag_rule.json (the one place both languages read them from;
 * pass the parsed file as `rule`).
 *
 * A classified row is flagged, reasons joined by '+' in this order:
 *   low_confidence  its top-1 probability is below `below` (--flag-below; 0: never)
 *   unlike_mnist    one of the input's stroke statistics (inputFeatures) lies outside the range
 *                   MNIST's training digits of the row's class span (rule.class_ranges)
 * An unflagged row's flag is null (JSON), as in Python's JSONL.
 *
 * Works as a browser global (window.cnnEdgeFlags) and as a CommonJS module (Node.js).
 */
(function (root, factory) {
  if (typeof module === 'object' && module.exports) module.exports = factory();
  else root.cnnEdgeFlags = factory();
})(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  const SIZE = 28;
  const REASONS = ['low_confidence', 'unlike_mnist'];

  /** 784 model inputs (0..255, light ink on black, row-major) -> the integer statistics of
   * runtime/flags.py input_features: ink, perimeter, euler, crossings, solid. */
  function inputFeatures(pixels, inkLevel) {
    const W = SIZE + 2; // a background frame around the field
    const p = new Uint8Array(W * W);
    let ink = 0;
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        if (pixels[y * SIZE + x] >= inkLevel) { p[(y + 1) * W + x + 1] = 1; ink++; }
      }
    }
    let perimeter = 0, q1 = 0, q3 = 0, diagonal = 0, crossings = 0;
    for (let r = 0; r < W; r++) {
      let runs = 0;
      for (let c = 1; c < W; c++) {
        const here = p[r * W + c], left = p[r * W + c - 1];
        if (here !== left) perimeter++;
        if (here && !left) runs++;
      }
      crossings = Math.max(crossings, runs);
    }
    for (let c = 0; c < W; c++) {
      let runs = 0;
      for (let r = 1; r < W; r++) {
        const here = p[r * W + c], up = p[(r - 1) * W + c];
        if (here !== up) perimeter++;
        if (here && !up) runs++;
      }
      crossings = Math.max(crossings, runs);
    }
    for (let r = 0; r < W - 1; r++) {
      for (let c = 0; c < W - 1; c++) {
        const a = p[r * W + c], b = p[r * W + c + 1], d = p[(r + 1) * W + c], e = p[(r + 1) * W + c + 1];
        const q = a + b + d + e;
        if (q === 1) q1++;
        else if (q === 3) q3++;
        else if (q === 2 && a === e) diagonal++; // two corners set, diagonally opposite
      }
    }
    // The largest all-ink square: side[y][x] = 1 + min of the three neighbours above and left.
    const side = new Int32Array((SIZE + 1) * (SIZE + 1));
    let solid = 0;
    for (let y = 1; y <= SIZE; y++) {
      for (let x = 1; x <= SIZE; x++) {
        if (!p[y * W + x]) continue;
        const s = 1 + Math.min(side[(y - 1) * (SIZE + 1) + x], side[y * (SIZE + 1) + x - 1], side[(y - 1) * (SIZE + 1) + x - 1]);
        side[y * (SIZE + 1) + x] = s;
        if (s > solid) solid = s;
      }
    }
    return { ink, perimeter, euler: Math.floor((q1 - q3 - 2 * diagonal) / 4), crossings, solid };
  }

  /** Whether an input given class `cls` (of a model with `classes` classes) is unlike MNIST: a
   * statistic outside that class's range; a model of another class count than the rule's is held
   * to the range of all classes together, as in Python (core/flag_rule.py FlagRule.bounds). */
  function unlikeMnist(pixels, cls, classes, rule) {
    const features = inputFeatures(pixels, rule.ink_level);
    for (const [name, ranges] of Object.entries(rule.class_ranges)) {
      const [lo, hi] = classes === ranges.length ? ranges[cls]
        : [Math.min(...ranges.map((r) => r[0])), Math.max(...ranges.map((r) => r[1]))];
      if (features[name] < lo || features[name] > hi) return true;
    }
    return false;
  }

  /** A classified row's flag: its 784 inputs and its probabilities -> null, or the reasons joined
   * by '+'. `below`: the low_confidence threshold (default: the rule's). */
  function rowFlag(pixels, probabilities, rule, below = rule.low_confidence_below) {
    let top = 0;
    for (let i = 1; i < probabilities.length; i++) if (probabilities[i] > probabilities[top]) top = i; // ties: the lower index
    const on = [probabilities[top] < below, unlikeMnist(pixels, top, probabilities.length, rule)];
    const reasons = REASONS.filter((_, i) => on[i]);
    return reasons.length ? reasons.join('+') : null;
  }

  return { REASONS, inputFeatures, unlikeMnist, rowFlag };
});
