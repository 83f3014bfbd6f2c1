/*
 * The demo page: a drawing pad (mouse, finger, pen), live probabilities from ONNX Runtime Web
 * (WebAssembly), and the test vectors checked on load. State for tests is on window.cnnEdge.
 */
'use strict';

// Times are milliseconds since navigation started (performance.now()).
const state = (window.cnnEdge = { ready: false, sessionMs: null, firstPredictionMs: null, vectorsMs: null,
  vectors: null, prediction: null, error: null });
const pad = document.getElementById('pad');
const ctx = pad.getContext('2d', { willReadFrequently: true });
const bars = document.getElementById('bars');
let session = null;
let preprocessing = 'mnist-v1'; // the model's, from model-info.json (its metadata)
let pending = false;
let running = false;

function clearPad() {
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, pad.width, pad.height);
  document.getElementById('answer').textContent = '';
  showProbabilities(null);
  state.prediction = null;
}

function showProbabilities(probs) {
  bars.innerHTML = '';
  const best = probs ? cnnEdgeVectors.argmax(probs) : -1;
  for (let d = 0; d < 10; d++) {
    const p = probs ? probs[d] : 0;
    const li = document.createElement('li');
    if (d === best) li.className = 'top';
    li.innerHTML = `<span class="digit">${d}</span><span class="bar" style="width:${Math.round(p * 200)}px"></span><span class="p">${(p * 100).toFixed(1)}%</span>`;
    bars.appendChild(li);
  }
}

function showPreview(pixels) {
  const preview = document.getElementById('preview').getContext('2d');
  const img = preview.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const v = Math.round(pixels[i]);
    img.data.set([v, v, v, 255], 4 * i);
  }
  preview.putImageData(img, 0, 0);
}

async function run(pixels, batch) {
  const input = new ort.Tensor('float32', pixels, [batch, 1, 28, 28]);
  const out = await session.run({ pixels: input });
  return out.probabilities.data;
}

async function predictPad() {
  if (!session || running) { pending = true; return; }
  running = true;
  try {
    const { data, width, height } = ctx.getImageData(0, 0, pad.width, pad.height);
    const { pixels, blank, error } = cnnEdgePreprocess.preprocessRGBA(data, width, height, preprocessing);
    showPreview(pixels);
    if (blank) { showProbabilities(null); document.getElementById('answer').textContent = ''; return; }
    if (error) { showProbabilities(null); document.getElementById('answer').textContent = '?'; state.prediction = { error }; return; }
    const probs = Array.from(await run(pixels, 1));
    const label = cnnEdgeVectors.argmax(probs);
    state.prediction = { label, probabilities: probs };
    document.getElementById('answer').textContent = String(label);
    showProbabilities(probs);
  } finally {
    running = false;
    if (pending) { pending = false; requestAnimationFrame(predictPad); }
  }
}


async function checkVectors(info) {
  const vectors = await window.cnnEdgeEarly.vectors;
  const pixels = cnnEdgeVectors.packPixels(vectors);
  await run(pixels.subarray(0, 784), 1); // the first answer a user could get
  state.firstPredictionMs = performance.now();
  const probs = await run(pixels, vectors.vectors.length);
  state.vectorsMs = performance.now();
  const { n, agree, agreement, maxAbsDiff, pass, precision, tolerance } =
    cnnEdgeVectors.judge(vectors, probs, info.int8 ? 'int8' : 'fp32');
  state.vectors = { n, agreement, maxAbsDiff, pass, precision };
  const el = document.getElementById('vectors');
  el.dataset.status = pass ? 'pass' : 'fail';
  const limit = tolerance.max_abs_diff_probabilities === null ? 'top-1 only (int8)' : `<= ${tolerance.max_abs_diff_probabilities}`;
  el.textContent = `test vectors: ${pass ? 'PASS' : 'FAIL'}: ${agree}/${n} top-1 agree with PyTorch, ` +
    `max abs diff ${maxAbsDiff.toExponential(2)} (${limit})`;
}

function setUpDrawing() {
  let drawing = false;
  const at = (e) => {
    const r = pad.getBoundingClientRect();
    return [(e.clientX - r.left) * (pad.width / r.width), (e.clientY - r.top) * (pad.height / r.height)];
  };
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  pad.addEventListener('pointerdown', (e) => {
    drawing = true;
    pad.setPointerCapture(e.pointerId);
    const [x, y] = at(e);
    ctx.strokeStyle = '#111';
    ctx.lineWidth = e.pointerType === 'pen' && e.pressure ? 10 + 14 * e.pressure : 18;
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.lineTo(x + 0.01, y);
    ctx.stroke();
    requestAnimationFrame(predictPad);
  });
  pad.addEventListener('pointermove', (e) => {
    if (!drawing) return;
    const [x, y] = at(e);
    ctx.lineTo(x, y);
    ctx.stroke();
    requestAnimationFrame(predictPad);
  });
  const stop = () => { if (drawing) { drawing = false; requestAnimationFrame(predictPad); } };
  pad.addEventListener('pointerup', stop);
  pad.addEventListener('pointercancel', stop);
  document.getElementById('clear').addEventListener('click', clearPad);
}

async function main() {
  clearPad();
  setUpDrawing();
  try {
    ort.env.wasm.wasmPaths = new URL('vendor/', location.href).href;
    ort.env.wasm.numThreads = 1; // no cross-origin isolation needed; the model is small
    const infoRequest = fetch('model-info.json');
    session = await ort.InferenceSession.create(new Uint8Array(await window.cnnEdgeEarly.model),
      { executionProviders: ['wasm'] });
    state.sessionMs = performance.now();
    const info = await (await infoRequest).json();
    preprocessing = info.preprocessing || preprocessing;
    document.getElementById('model').textContent =
      `${info.name} (${info.int8 ? 'int8' : 'fp32'}), ONNX Runtime Web ${ort.env.versions.web}, WebAssembly`;
    await checkVectors(info);
    state.ready = true;
  } catch (err) {
    state.error = String(err);
    document.getElementById('vectors').dataset.status = 'fail';
    document.getElementById('vectors').textContent = `error: ${err}`;
  }
}

main();
