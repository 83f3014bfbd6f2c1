/*
 * cnn-edge preprocessing in JavaScript, "mnist-v1" and "mnist-v2": the same algorithms, step for
 * step, as cnn_edge/runtime/preprocess.py and cnn_edge/runtime/finder.py (tests hold the two within
 * 1/255 of each other on the same images, and mnist-v2 to the same decisions: the same digit
 * found, the same reason when there is none).
 *
 * mnist-v1: RGBA pixels (a canvas's ImageData, or a decoded PNG) -> grey -> polarity from the
 * border -> paper level and noise removed -> crop to the ink -> longer side to 20 px (Pillow's
 * anti-aliased resampling: box filter when shrinking, bilinear when growing) -> 28x28 with the
 * centre of mass at (14, 14). The result is the model's input: 784 floats, 0..255, row-major.
 * mnist-v2: the one digit of a cluttered picture found first (findDigit), or the reason there is
 * none; mnist-v1's result where it already sees one digit and nothing else.
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

  /** mnist-v1's first half, as preprocess.py's _v1_ink: grey (width x height) -> { g: Float64Array
   * ink, 0 or INK_LEVEL..255, light on black; blank; dark: whether the ink was taken to be dark }. */
  function v1Ink(greyIn, width, height) {
    const g = Float64Array.from(greyIn);
    const n = width * height;
    let edge = frame(g, width, height);
    let background = upperMedian(edge);
    const dark = lightPaper(edge, Math.min(width, height) <= STRIP_WIDTH);
    if (dark) { // dark ink on light paper: invert, MNIST has light ink on black
      for (let i = 0; i < n; i++) g[i] = 255 - g[i];
      edge = edge.map((v) => 255 - v);
      background = 255 - background;
    }
    const spread = 1.4826 * upperMedian(edge.map((v) => Math.abs(v - background)));
    const level = background + NOISE_SIGMAS * spread;
    let peak = -Infinity;
    for (let i = 0; i < n; i++) { g[i] -= level; if (g[i] > peak) peak = g[i]; }
    if (peak <= 8.0) return { g: new Float64Array(n), blank: true, dark };
    for (let i = 0; i < n; i++) {
      g[i] *= 255.0 / peak;
      if (g[i] < INK_LEVEL) g[i] = 0;
    }
    return { g, blank: false, dark };
  }

  /** mnist-v1's second half, as preprocess.py's _v1_place: ink -> 28x28, cropped to the ink, its
   * longer side scaled to DIGIT_BOX, centred by mass. */
  function v1Place(g, width, height) {
    let r0 = height, r1 = -1, c0 = width, c1 = -1;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (g[y * width + x] !== 0) {
          if (y < r0) r0 = y; if (y > r1) r1 = y;
          if (x < c0) c0 = x; if (x > c1) c1 = x;
        }
      }
    }
    const ch = r1 - r0 + 1, cw = c1 - c0 + 1;
    if (Math.max(ch, cw) === DIGIT_BOX) { // already MNIST-sized: shift the whole image
      const [dy, dx] = offsets(g, width, height);
      return place(g, width, height, dy, dx);
    }
    const crop = new Float64Array(ch * cw);
    for (let y = 0; y < ch; y++) for (let x = 0; x < cw; x++) crop[y * cw + x] = g[(y + r0) * width + x + c0];
    const fit = fitBox(crop, cw, ch);
    const [dy, dx] = offsets(fit.data, fit.w, fit.h);
    return place(fit.data, fit.w, fit.h, dy, dx);
  }

  /** Grey (width x height) -> { pixels: Float32Array(784), blank: bool }. */
  function mnistV1(greyIn, width, height) {
    const { g, blank } = v1Ink(greyIn, width, height);
    if (blank) return { pixels: new Float32Array(IMAGE_SIZE * IMAGE_SIZE), blank: true };
    return { pixels: v1Place(g, width, height), blank: false };
  }

  // ---- mnist-v2: the one digit of a cluttered picture (cnn_edge/runtime/finder.py, step for step).
  // Every decision is made on integers (the grey rounded once, window sums, counts, moments) or
  // on double-precision formulas of them written as in Python, so both find the same digit.
  const BLANK = 'blank image: no digit stands out from the background';
  const NO_DIGIT = 'no digit found';
  const NO_SINGLE_DIGIT = 'no single digit found';
  const PREPROCESSINGS = ['mnist-v1', 'mnist-v2'];
  const SMALL_PICTURE = 64; // see preprocess.py: a picture this small is left to mnist-v1
  const GREY_OFFSET = 0.0005;
  const INK_PERCENT = 65, CONTRAST = 24;
  const WINDOW_DIVISOR = 16, MIN_RADIUS = 7;
  const MIN_SIZE = 0.06, MIN_PIXELS = 8, LINE_RATIO = 14.0, STRAIGHT = 2.0, SOLID = 0.3, MAX_ASPECT = 2.0;
  const DARK_PERCENT = 75, DARK_AROUND = 40, AROUND = 3;
  const MERGE_REACH = 0.25, MERGE_GROWTH = 2.0, RIVAL = 0.75;
  const ONE_MARK_REACH = 0.25, SPECK = 4, ONE_MARK_ASPECT = 2.2, UNSEEN = 0.06, CROP_MARGIN = 0.1;

  function integerGrey(grey) {
    const q = new Int32Array(grey.length);
    for (let i = 0; i < grey.length; i++) q[i] = Math.floor(grey[i] + GREY_OFFSET);
    return q;
  }

  function negative(q) {
    const out = new Int32Array(q.length);
    for (let i = 0; i < q.length; i++) out[i] = 255 - q[i];
    return out;
  }

  /** Element n // 2 of the sorted integers. */
  function upperMedianInt(values) {
    const sorted = Int32Array.from(values).sort();
    return sorted[Math.floor(sorted.length / 2)];
  }

  /** { total, count } of v over the (2r + 1)-square window around each pixel, cut by the edge. */
  function windowSums(v, w, h, r) {
    const W = w + 1;
    const integral = new Float64Array((h + 1) * W); // exact: integers below 2**53
    for (let y = 0; y < h; y++) { // cumsum down the rows, then along them, as numpy does
      for (let x = 0; x < w; x++) integral[(y + 1) * W + x + 1] = integral[y * W + x + 1] + v[y * w + x];
    }
    for (let y = 1; y <= h; y++) for (let x = 1; x <= w; x++) integral[y * W + x] += integral[y * W + x - 1];
    const total = new Float64Array(w * h), count = new Float64Array(w * h);
    for (let y = 0; y < h; y++) {
      const y0 = Math.max(y - r, 0), y1 = Math.min(y + r + 1, h);
      for (let x = 0; x < w; x++) {
        const x0 = Math.max(x - r, 0), x1 = Math.min(x + r + 1, w);
        total[y * w + x] = integral[y1 * W + x1] - integral[y0 * W + x1] - integral[y1 * W + x0] + integral[y0 * W + x0];
        count[y * w + x] = (y1 - y0) * (x1 - x0);
      }
    }
    return { total, count };
  }

  /** The mask (Uint8Array) grown by r pixels in every direction. */
  function dilate(mask, w, h, r) {
    const { total } = windowSums(mask, w, h, r);
    const out = new Uint8Array(w * h);
    for (let i = 0; i < out.length; i++) out[i] = total[i] > 0 ? 1 : 0;
    return out;
  }

  /** 8-connected components, numbered 1..n in the raster order of their first pixel. */
  function components(mask, w, h) {
    const labels = new Int32Array(w * h);
    const area = [0], y0 = [0], x0 = [0], y1 = [0], x1 = [0];
    const stack = [];
    let n = 0;
    for (let start = 0; start < w * h; start++) {
      if (!mask[start] || labels[start]) continue;
      n++;
      labels[start] = n;
      stack.push(start);
      let a = 0, ty0 = h, tx0 = w, ty1 = 0, tx1 = 0;
      while (stack.length) {
        const p = stack.pop();
        const py = Math.floor(p / w), px = p - py * w;
        a++;
        if (py < ty0) ty0 = py; if (py + 1 > ty1) ty1 = py + 1;
        if (px < tx0) tx0 = px; if (px + 1 > tx1) tx1 = px + 1;
        for (let dy = -1; dy <= 1; dy++) {
          const ny = py + dy;
          if (ny < 0 || ny >= h) continue;
          for (let dx = -1; dx <= 1; dx++) {
            const nx = px + dx;
            if (nx < 0 || nx >= w) continue;
            const q = ny * w + nx;
            if (mask[q] && !labels[q]) { labels[q] = n; stack.push(q); }
          }
        }
      }
      area.push(a); y0.push(ty0); x0.push(tx0); y1.push(ty1); x1.push(tx1);
    }
    return { labels, n, area, y0, x0, y1, x1, w, h };
  }

  /** sqrt(12 * each eigenvalue of the pixels' covariance), the larger first (finder.py _axes). */
  function axes(n, sy, sx, syy, sxx, sxy) {
    const my = sy / n, mx = sx / n;
    const vyy = syy / n - my * my;
    const vxx = sxx / n - mx * mx;
    const vxy = sxy / n - my * mx;
    const half = (vyy - vxx) / 2.0;
    const mean = (vyy + vxx) / 2.0;
    const root = Math.sqrt(half * half + vxy * vxy);
    return [Math.sqrt(12.0 * Math.max(mean + root, 0.0)), Math.sqrt(12.0 * Math.max(mean - root, 0.0))];
  }

  /** Shapes of the components `wanted` (labels, in that order), from exact integer sums. */
  function shapes(c, wanted) {
    if (!wanted.length) return [];
    const want = new Uint8Array(c.n + 1);
    for (const k of wanted) want[k] = 1;
    const sums = new Map(wanted.map((k) => [k, [0, 0, 0, 0, 0]]));
    for (let p = 0; p < c.labels.length; p++) {
      const k = c.labels[p];
      if (!k || !want[k]) continue;
      const y = Math.floor(p / c.w), x = p - y * c.w, s = sums.get(k);
      s[0] += y; s[1] += x; s[2] += y * y; s[3] += x * x; s[4] += y * x;
    }
    return wanted.map((k) => {
      const s = sums.get(k), area = c.area[k];
      const [length, breadth] = axes(area, s[0], s[1], s[2], s[3], s[4]);
      const box = [c.y0[k], c.x0[k], c.y1[k], c.x1[k]];
      return { label: k, area, box, length, breadth, longer: Math.max(box[2] - box[0], box[3] - box[1]),
        thickness: area / Math.max(length, 1.0) };
    });
  }

  function isLine(s) {
    return s.length > LINE_RATIO * s.thickness && s.breadth <= STRAIGHT * s.thickness;
  }

  /** Crop of a label image: Uint8Array of (labels == k) over rows y0..y1, columns x0..x1. */
  function own(c, k, y0, x0, y1, x1) {
    const cw = x1 - x0, out = new Uint8Array((y1 - y0) * cw);
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) out[(y - y0) * cw + x - x0] = c.labels[y * c.w + x] === k ? 1 : 0;
    return out;
  }

  function isSolid(c, s) {
    const r = Math.max(1, Math.ceil((SOLID * s.longer - 1) / 2));
    const [y0, x0, y1, x1] = s.box;
    const { total } = windowSums(own(c, s.label, y0, x0, y1, x1), x1 - x0, y1 - y0, r);
    const full = (2 * r + 1) ** 2;
    for (let i = 0; i < total.length; i++) if (total[i] === full) return true;
    return false;
  }

  function onPaper(c, s, q, mask) {
    const { w, h } = c;
    const y0 = Math.max(s.box[0] - AROUND, 0), x0 = Math.max(s.box[1] - AROUND, 0);
    const y1 = Math.min(s.box[2] + AROUND, h), x1 = Math.min(s.box[3] + AROUND, w);
    const cw = x1 - x0, ch = y1 - y0;
    const mine = own(c, s.label, y0, x0, y1, x1);
    const inkHere = new Uint8Array(cw * ch);
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) inkHere[(y - y0) * cw + x - x0] = mask[y * w + x];
    const grown = dilate(mine, cw, ch, AROUND), nearInk = dilate(inkHere, cw, ch, 1);
    const around = [];
    let ownSum = 0;
    for (let y = 0; y < ch; y++) {
      for (let x = 0; x < cw; x++) {
        const i = y * cw + x, v = q[(y + y0) * w + x + x0];
        if (grown[i] && !nearInk[i]) around.push(v);
        if (mine[i]) ownSum += v;
      }
    }
    if (!around.length) return false;
    const sorted = Int32Array.from(around).sort();
    const paper = sorted[Math.floor((3 * around.length) / 4)];
    if (100 * ownSum > INK_PERCENT * paper * s.area) return false;
    let dark = 0;
    for (const v of around) if (100 * v < DARK_PERCENT * paper) dark++;
    return 100 * dark <= DARK_AROUND * around.length;
  }

  function inkMask(q, w, h) {
    const radius = Math.max(MIN_RADIUS, pyRound(Math.min(h, w) / WINDOW_DIVISOR));
    const { total, count } = windowSums(q, w, h, radius);
    const mask = new Uint8Array(w * h);
    for (let i = 0; i < mask.length; i++) {
      mask[i] = 100 * q[i] * count[i] < INK_PERCENT * total[i] && total[i] - count[i] * q[i] >= CONTRAST * count[i] ? 1 : 0;
    }
    return { mask, total, count };
  }

  function membersBox(c, members) {
    let y0 = Infinity, x0 = Infinity, y1 = -Infinity, x1 = -Infinity;
    for (const k of members) {
      y0 = Math.min(y0, c.y0[k]); x0 = Math.min(x0, c.x0[k]); y1 = Math.max(y1, c.y1[k]); x1 = Math.max(x1, c.x1[k]);
    }
    return [y0, x0, y1, x1];
  }

  function parts(c, digit) {
    const { w, h } = c;
    const reach = Math.ceil(MERGE_REACH * digit.longer);
    const [y0, x0, y1, x1] = digit.box;
    const wy0 = Math.max(y0 - reach, 0), wx0 = Math.max(x0 - reach, 0), wy1 = Math.min(y1 + reach, h), wx1 = Math.min(x1 + reach, w);
    const cw = wx1 - wx0, ch = wy1 - wy0;
    const near = dilate(own(c, digit.label, wy0, wx0, wy1, wx1), cw, ch, reach);
    const found = new Set();
    for (let y = 0; y < ch; y++) {
      for (let x = 0; x < cw; x++) {
        const k = c.labels[(y + wy0) * w + x + wx0];
        if (near[y * cw + x] && k && k !== digit.label) found.add(k);
      }
    }
    const members = new Set([digit.label]);
    let by = y0, bx = x0, ey = y1, ex = x1;
    for (const k of [...found].sort((a, b) => a - b)) { // label order: raster order of first pixels
      if (c.y0[k] === 0 || c.x0[k] === 0 || c.y1[k] === h || c.x1[k] === w) continue;
      const ny0 = Math.min(by, c.y0[k]), nx0 = Math.min(bx, c.x0[k]), ny1 = Math.max(ey, c.y1[k]), nx1 = Math.max(ex, c.x1[k]);
      if (Math.max(ny1 - ny0, nx1 - nx0) <= MERGE_GROWTH * digit.longer) {
        members.add(k);
        by = ny0; bx = nx0; ey = ny1; ex = nx1;
      }
    }
    return members;
  }

  function crop(c, q, total, count, members) {
    const { w, h } = c;
    let [y0, x0, y1, x1] = membersBox(c, members);
    const margin = Math.max(2, Math.ceil(CROP_MARGIN * Math.max(y1 - y0, x1 - x0)));
    y0 = Math.max(y0 - margin, 0); x0 = Math.max(x0 - margin, 0); y1 = Math.min(y1 + margin, h); x1 = Math.min(x1 + margin, w);
    const cw = x1 - x0, ch = y1 - y0;
    const part = new Uint8Array(cw * ch);
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) part[(y - y0) * cw + x - x0] = members.has(c.labels[y * w + x]) ? 1 : 0;
    const keep = dilate(part, cw, ch, 1);
    const ink = new Float64Array(cw * ch);
    for (let y = 0; y < ch; y++) {
      for (let x = 0; x < cw; x++) {
        const i = y * cw + x, p = (y + y0) * w + x + x0;
        if (keep[i]) ink[i] = Math.max(total[p] / count[p] - q[p], 0.0);
      }
    }
    return { ink, w: cw, h: ch, box: [y0, x0, y1, x1] };
  }

  /** finder.py _search: { found: {ink, w, h, box} | null, reason, members, c }. */
  function search(q, w, h, mask, total, count) {
    const c = components(mask, w, h);
    if (c.n === 0) return { found: null, reason: BLANK, members: new Set(), c };
    const minLonger = Math.max(MIN_PIXELS, MIN_SIZE * Math.min(h, w));
    const inside = [];
    for (let k = 1; k <= c.n; k++) {
      const longer = Math.max(c.y1[k] - c.y0[k], c.x1[k] - c.x0[k]);
      if (c.y0[k] > 0 && c.x0[k] > 0 && c.y1[k] < h && c.x1[k] < w && longer >= minLonger) inside.push(k);
    }
    const candidates = shapes(c, inside).filter((s) => s.box[3] - s.box[1] <= MAX_ASPECT * (s.box[2] - s.box[0]) &&
      !isLine(s) && !isSolid(c, s) && onPaper(c, s, q, mask));
    if (!candidates.length) return { found: null, reason: `${NO_DIGIT}: no mark in the picture is shaped like a digit`, members: new Set(), c };
    candidates.sort((a, b) => b.longer - a.longer || a.label - b.label);
    const digit = candidates[0];
    const members = parts(c, digit);
    const rivals = candidates.slice(1).filter((s) => !members.has(s.label) && s.longer >= RIVAL * digit.longer);
    if (rivals.length) {
      const r = rivals[0];
      return { found: null, members, c, reason: `${NO_SINGLE_DIGIT}: ${1 + rivals.length} digit-like marks of similar size ` +
        `(at x=${digit.box[1]}, y=${digit.box[0]} and x=${r.box[1]}, y=${r.box[0]})` };
    }
    return { found: crop(c, q, total, count, members), reason: '', members, c };
  }

  function sumWhere(values, where, want) {
    let sum = 0;
    for (let i = 0; i < values.length; i++) if (where[i] === want) sum += values[i];
    return sum;
  }

  /** finder.py _sees: mnist-v1's ink is the digit's. */
  function sees(v1, c, members) {
    const { w, h } = c;
    const [y0, x0, y1, x1] = membersBox(c, members);
    const longer = Math.max(y1 - y0, x1 - x0);
    const reach = Math.ceil(ONE_MARK_REACH * longer);
    const on = new Uint8Array(w * h);
    let r0 = h, r1 = -1, c0 = w, c1 = -1;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        if (v1[y * w + x] > 0) {
          on[y * w + x] = 1;
          if (y < r0) r0 = y; if (y > r1) r1 = y; if (x < c0) c0 = x; if (x > c1) c1 = x;
        }
      }
    }
    if (r0 < y0 - reach || r1 >= y1 + reach || c0 < x0 - reach || c1 >= x1 + reach) return false;
    const part = new Uint8Array(w * h);
    for (let i = 0; i < part.length; i++) part[i] = members.has(c.labels[i]) ? 1 : 0;
    const near = dilate(part, w, h, reach);
    let all = 0;
    for (const v of v1) all += v;
    if (sumWhere(v1, near, 0) > UNSEEN * all) return false;
    const margin = Math.max(2, Math.ceil(CROP_MARGIN * longer));
    const seen = dilate(on, w, h, margin);
    let unseen = 0, size = 0;
    for (let i = 0; i < part.length; i++) { if (part[i]) { size++; if (!seen[i]) unseen++; } }
    return unseen <= UNSEEN * size;
  }

  /** finder.py _one_mark: mnist-v1's ink is one digit-like mark of the picture's ink. */
  function oneMark(v1, mask, w, h) {
    const on = new Uint8Array(w * h);
    for (let i = 0; i < on.length; i++) on[i] = v1[i] > 0 ? 1 : 0;
    const c = components(on, w, h);
    const big = [];
    for (let k = 1; k <= c.n; k++) if (c.area[k] >= SPECK) big.push(k);
    if (!big.length) return false;
    let mainLabel = big[0];
    for (const k of big) if (c.area[k] > c.area[mainLabel]) mainLabel = k;
    const [main] = shapes(c, [mainLabel]);
    if (big.length > 1) {
      const keep = new Uint8Array(w * h), isBig = new Uint8Array(c.n + 1);
      for (const k of big) isBig[k] = 1;
      for (let i = 0; i < keep.length; i++) keep[i] = isBig[c.labels[i]];
      if (components(dilate(keep, w, h, Math.ceil(ONE_MARK_REACH * main.longer)), w, h).n !== 1) return false;
    }
    if (isLine(main)) return false;
    const [y0, x0, y1, x1] = membersBox(c, big);
    if (x1 - x0 > ONE_MARK_ASPECT * (y1 - y0)) return false;
    const margin = Math.max(2, Math.ceil(CROP_MARGIN * main.longer));
    let all = 0;
    for (const v of v1) all += v;
    if (sumWhere(v1, dilate(mask, w, h, margin), 0) > UNSEEN * all) return false;
    const seen = dilate(on, w, h, margin);
    let missed = 0, inked = 0;
    for (let i = 0; i < mask.length; i++) { if (mask[i]) { inked++; if (!seen[i]) missed++; } }
    return missed <= UNSEEN * inked;
  }

  /**
   * finder.py find_digit: { whole: true } (mnist-v1's result stands), { ink, w, h, box } (the digit,
   * cropped), or { reason } (no single digit). `v1`: mnist-v1's ink, null when it keeps none.
   */
  function findDigit(grey, w, h, v1, v1Dark) {
    const q = integerGrey(grey);
    // Light ink only where mnist-v1 took the ground to be dark and so is most of the picture.
    const lit = Boolean(v1) && !v1Dark && upperMedianInt(q) <= 127;
    let light = null, lightMask = null;
    if (lit) { // mnist-v1 saw light ink: its result stands if the digit found as light ink is what it saw
      const nq = negative(q);
      const m = inkMask(nq, w, h);
      lightMask = m.mask;
      light = search(nq, w, h, m.mask, m.total, m.count);
      if (light.found && sees(v1, light.c, light.members)) return { whole: true };
    }
    const m = inkMask(q, w, h);
    const dark = search(q, w, h, m.mask, m.total, m.count);
    const v1IsDark = Boolean(v1) && v1Dark;
    if (dark.found) return v1IsDark && sees(v1, dark.c, dark.members) ? { whole: true } : dark.found;
    if (v1IsDark && oneMark(v1, m.mask, w, h)) return { whole: true };
    if (lit && !dark.reason.startsWith(NO_SINGLE_DIGIT)) { // no dark mark is digit-like
      if (oneMark(v1, lightMask, w, h)) return { whole: true };
      if (light.found) return light.found;
    }
    return { reason: dark.reason };
  }

  /** Grey (width x height) -> { pixels, blank, error } by mnist-v2 (preprocess.py preprocess_batch). */
  function mnistV2(greyIn, width, height) {
    const { g, blank, dark } = v1Ink(greyIn, width, height);
    const v1 = blank ? null : g;
    const whole = () => (blank ? { pixels: new Float32Array(IMAGE_SIZE * IMAGE_SIZE), blank: true, error: BLANK }
      : { pixels: v1Place(g, width, height), blank: false, error: '' });
    if (Math.max(width, height) <= SMALL_PICTURE) return whole();
    const found = findDigit(greyIn, width, height, v1, dark);
    if (found.whole) return whole();
    if (found.reason) return { pixels: new Float32Array(IMAGE_SIZE * IMAGE_SIZE), blank: found.reason === BLANK, error: found.reason };
    return { pixels: mnistV1(found.ink, found.w, found.h).pixels, blank: false, error: '' };
  }

  /** RGBA -> model input, by preprocessing `version` (the model's metadata names it); the one call
   * a page or a service needs. Returns { pixels, blank, error } (error: '' when fine). */
  function preprocessRGBA(rgba, width, height, version = 'mnist-v1') {
    return preprocessGrey(greyFromRGBA(rgba, width, height), width, height, version);
  }

  /** Grey -> { pixels, blank, error } by `version`: mnist-v1, or mnist-v2 (mnistV2). */
  function preprocessGrey(grey, width, height, version = 'mnist-v1') {
    if (version === 'mnist-v2') return mnistV2(grey, width, height);
    if (version !== 'mnist-v1') throw new Error(`unknown preprocessing ${JSON.stringify(version)}; this cnn-edge knows mnist-v1, mnist-v2`);
    const out = mnistV1(grey, width, height);
    return { pixels: out.pixels, blank: out.blank, error: out.blank ? BLANK : '' };
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

  return { IMAGE_SIZE, BLANK, PREPROCESSINGS, greyFromRGBA, mnistV1, mnistV2, findDigit, orient, preprocessGrey,
    preprocessRGBA, resampleMatrix };
});
