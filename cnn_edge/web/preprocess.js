/*
 * cnn-edge preprocessing "mnist-v1" in JavaScript: the same algorithm, step for step, as
 * cnn_edge/preprocess.py (tests hold the two within 1/255 of each other on the same images).
 *
 * RGBA pixels (a canvas's ImageData, or a decoded PNG) -> grey -> polarity from the border ->
 * paper level and noise removed -> crop to the ink -> longer side to 20 px (Pillow's
 * anti-aliased resampling: box filter when shrinking, bilinear when growing) -> 28x28 with the
 * centre of mass at (14, 14). The result is the model's input: 784 floats, 0..255, row-major.
 *
 * Works as a browser global (window.cnnEdgePreprocess) and as a CommonJS module (Node.js).
 */
(function (root, factory) {
  if (typeof module === 'object' && module.exports) module.exports = factory();
  else root.cnnEdgePreprocess = factory();
})(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  const IMAGE_SIZE = 28;
  const DIGIT_BOX = 20;
  const CENTRE_OF_MASS = 14.0;
  const INK_LEVEL = 30.55; // see preprocess.py: off the round ratios integer images hit
  const ROUND_NUDGE = 1e-6;
  const NOISE_SIGMAS = 3.0;
  const LUMA = [0.299, 0.587, 0.114];

  /** RGBA bytes (width*height*4) -> grey Float64Array 0..255; transparency is composited on a
   * background that contrasts with the ink, as in Python's to_grey. */
  function greyFromRGBA(rgba, width, height) {
    const n = width * height;
    const grey = new Float64Array(n);
    let opaque = true;
    for (let i = 0; i < n; i++) {
      const p = 4 * i;
      grey[i] = rgba[p] * LUMA[0] + rgba[p + 1] * LUMA[1] + rgba[p + 2] * LUMA[2];
      if (rgba[p + 3] !== 255) opaque = false;
    }
    if (opaque) return grey;
    let inkSum = 0, alphaSum = 0;
    for (let i = 0; i < n; i++) {
      const a = rgba[4 * i + 3] / 255;
      inkSum += grey[i] * a;
      alphaSum += a;
    }
    const background = inkSum / Math.max(alphaSum, 1e-6) < 128 ? 255 : 0;
    for (let i = 0; i < n; i++) {
      const a = rgba[4 * i + 3] / 255;
      grey[i] = grey[i] * a + background * (1 - a);
    }
    return grey;
  }

  /** Upper median (element n//2 of the sorted values), as Python's partition-based median. */
  function upperMedian(values) {
    const sorted = Float64Array.from(values).sort();
    return sorted[Math.floor(sorted.length / 2)];
  }

  const STRIP_WIDTH = 3; // see preprocess.py: a strip's paper is read from its two short ends

  /** Where the paper shows, as preprocess.py's _frame: the frame, or a strip's two short ends. */
  function frame(g, w, h) {
    const out = [];
    if (Math.min(w, h) <= STRIP_WIDTH) {
      if (h >= w) { for (let x = 0; x < w; x++) out.push(g[x]); for (let x = 0; x < w; x++) out.push(g[(h - 1) * w + x]); }
      else { for (let y = 0; y < h; y++) out.push(g[y * w]); for (let y = 0; y < h; y++) out.push(g[y * w + w - 1]); }
      return out;
    }
    for (let x = 0; x < w; x++) out.push(g[x]);
    for (let x = 0; x < w; x++) out.push(g[(h - 1) * w + x]);
    for (let y = 1; y < h - 1; y++) out.push(g[y * w]);
    for (let y = 1; y < h - 1; y++) out.push(g[y * w + w - 1]);
    return out;
  }

  /** As preprocess.py's _light_paper: the frame's upper median, a strip's ends' mean. */
  function lightPaper(edge, strip) {
    if (!strip) return upperMedian(edge) > 127.5;
    let sum = 0;
    for (const v of edge) sum += v;
    return sum / edge.length > 127.5;
  }

  /** (nOut x nIn) weights of Pillow's anti-aliased resize along one axis. */
  function resampleMatrix(nIn, nOut, box) {
    const scale = nIn / nOut;
    const filterScale = Math.max(scale, 1.0);
    const support = (box ? 0.5 : 1.0) * filterScale;
    const m = [];
    for (let o = 0; o < nOut; o++) {
      const centre = (o + 0.5) * scale;
      const lo = Math.max(Math.trunc(centre - support + 0.5), 0);
      const hi = Math.min(Math.trunc(centre + support + 0.5), nIn);
      const row = new Float64Array(nIn);
      let total = 0;
      for (let s = lo; s < hi; s++) {
        const x = (s - centre + 0.5) / filterScale;
        const w = box ? (x > -0.5 && x <= 0.5 ? 1 : 0) : Math.max(1 - Math.abs(x), 0);
        row[s] = w;
        total += w;
      }
      if (total !== 0) for (let s = lo; s < hi; s++) row[s] /= total;
      m.push(row);
    }
    return m;
  }

  /** Crop (h x w, row-major) -> longer side DIGIT_BOX, keeping the aspect ratio. */
  function fitBox(digit, w, h) {
    const scale = DIGIT_BOX / Math.max(h, w);
    const outH = Math.max(1, pyRound(h * scale)), outW = Math.max(1, pyRound(w * scale));
    const box = scale < 1;
    const my = resampleMatrix(h, outH, box), mx = resampleMatrix(w, outW, box);
    const tmp = new Float64Array(outH * w); // rows resampled first: (my @ digit)
    for (let o = 0; o < outH; o++) {
      const row = my[o];
      for (let y = 0; y < h; y++) {
        const k = row[y];
        if (k === 0) continue;
        for (let x = 0; x < w; x++) tmp[o * w + x] += k * digit[y * w + x];
      }
    }
    const out = new Float64Array(outH * outW); // then columns: (.. @ mx.T)
    for (let y = 0; y < outH; y++) {
      for (let o = 0; o < outW; o++) {
        const col = mx[o];
        let acc = 0;
        for (let x = 0; x < w; x++) if (col[x] !== 0) acc += tmp[y * w + x] * col[x];
        out[y * outW + o] = Math.min(Math.max(acc, 0), 255);
      }
    }
    return { data: out, w: outW, h: outH };
  }

  /** Python's round(): halves go to the even neighbour. */
  function pyRound(v) {
    const f = Math.floor(v), d = v - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return f % 2 === 0 ? f : f + 1;
  }

  /** Integer (dy, dx) that move the centre of mass of a (h x w) image to CENTRE_OF_MASS. */
  function offsets(img, w, h) {
    let total = 0, sy = 0, sx = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const v = img[y * w + x];
        total += v; sy += v * y; sx += v * x;
      }
    }
    const shift = CENTRE_OF_MASS + 0.5 + ROUND_NUDGE;
    return [Math.floor(shift - sy / total), Math.floor(shift - sx / total)];
  }

  /** Paste a (h x w) image into 28x28 at (top, left), cutting what falls outside. */
  function place(img, w, h, top, left) {
    const out = new Float32Array(IMAGE_SIZE * IMAGE_SIZE);
    for (let y = Math.max(top, 0); y < Math.min(top + h, IMAGE_SIZE); y++) {
      for (let x = Math.max(left, 0); x < Math.min(left + w, IMAGE_SIZE); x++) {
        out[y * IMAGE_SIZE + x] = img[(y - top) * w + (x - left)];
      }
    }
    return out;
  }

  /** Grey (width x height) -> { pixels: Float32Array(784), blank: bool }. */
  function mnistV1(greyIn, width, height) {
    const g = Float64Array.from(greyIn);
    const n = width * height;
    let edge = frame(g, width, height);
    let background = upperMedian(edge);
    if (lightPaper(edge, Math.min(width, height) <= STRIP_WIDTH)) { // dark ink on light paper: invert, MNIST has light ink on black
      for (let i = 0; i < n; i++) g[i] = 255 - g[i];
      edge = edge.map((v) => 255 - v);
      background = 255 - background;
    }
    const spread = 1.4826 * upperMedian(edge.map((v) => Math.abs(v - background)));
    const level = background + NOISE_SIGMAS * spread;
    let peak = -Infinity;
    for (let i = 0; i < n; i++) { g[i] -= level; if (g[i] > peak) peak = g[i]; }
    if (peak <= 8.0) return { pixels: new Float32Array(IMAGE_SIZE * IMAGE_SIZE), blank: true };
    let r0 = height, r1 = -1, c0 = width, c1 = -1;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = y * width + x;
        g[i] *= 255.0 / peak;
        if (g[i] < INK_LEVEL) g[i] = 0;
        if (g[i] !== 0) {
          if (y < r0) r0 = y; if (y > r1) r1 = y;
          if (x < c0) c0 = x; if (x > c1) c1 = x;
        }
      }
    }
    const ch = r1 - r0 + 1, cw = c1 - c0 + 1;
    if (Math.max(ch, cw) === DIGIT_BOX) { // already MNIST-sized: shift the whole image
      const [dy, dx] = offsets(g, width, height);
      return { pixels: place(g, width, height, dy, dx), blank: false };
    }
    const crop = new Float64Array(ch * cw);
    for (let y = 0; y < ch; y++) for (let x = 0; x < cw; x++) crop[y * cw + x] = g[(y + r0) * width + x + c0];
    const fit = fitBox(crop, cw, ch);
    const [dy, dx] = offsets(fit.data, fit.w, fit.h);
    return { pixels: place(fit.data, fit.w, fit.h, dy, dx), blank: false };
  }

  /** RGBA -> model input; the one call a page or a service needs. */
  function preprocessRGBA(rgba, width, height) {
    return mnistV1(greyFromRGBA(rgba, width, height), width, height);
  }

  /**
   * Turn RGBA pixels upright by their EXIF orientation (1..8), exactly as Python does (Pillow's
   * ImageOps.exif_transpose: 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise,
   * 7 transverse, 8 rotate 90 counter-clockwise). Returns {rgba, width, height}; any other value
   * leaves the image as it is.
   */
  function orient(rgba, width, height, orientation) {
    const w = width, h = height;
    const swap = orientation >= 5 && orientation <= 8;
    // Source (x, y) of output pixel (X, Y), for an output of W x H.
    const source = {
      2: (X, Y) => [w - 1 - X, Y],
      3: (X, Y) => [w - 1 - X, h - 1 - Y],
      4: (X, Y) => [X, h - 1 - Y],
      5: (X, Y) => [Y, X],
      6: (X, Y) => [Y, h - 1 - X],
      7: (X, Y) => [w - 1 - Y, h - 1 - X],
      8: (X, Y) => [w - 1 - Y, X],
    }[orientation];
    if (!source) return { rgba, width, height };
    const W = swap ? h : w, H = swap ? w : h;
    const out = new Uint8Array(W * H * 4);
    for (let Y = 0; Y < H; Y++) {
      for (let X = 0; X < W; X++) {
        const [x, y] = source(X, Y);
        const from = (y * w + x) * 4, to = (Y * W + X) * 4;
        out[to] = rgba[from]; out[to + 1] = rgba[from + 1]; out[to + 2] = rgba[from + 2]; out[to + 3] = rgba[from + 3];
      }
    }
    return { rgba: out, width: W, height: H };
  }

  return { IMAGE_SIZE, greyFromRGBA, mnistV1, orient, preprocessRGBA, resampleMatrix };
});
