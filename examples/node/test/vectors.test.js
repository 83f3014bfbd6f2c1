// The released models in Node.js against the test vectors: top-1 and the tolerance of the file.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const path = require('path');
const { EXPORTS, loadModel, readVectors, checkVectors } = require('../lib');

for (const [file, precision] of [['mnist_cnn.onnx', 'fp32'], ['mnist_cnn.int8.onnx', 'int8']]) {
  test(`${file} matches PyTorch on the test vectors (${precision})`, async () => {
    const vectors = readVectors();
    assert.strictEqual(vectors.format, 'cnn-edge-test-vectors/1');
    const result = await checkVectors(await loadModel(path.join(EXPORTS, file)), vectors, precision);
    console.log(JSON.stringify({ file, ...result }));
    assert.strictEqual(result.agreement, 1, `top-1 agreement ${result.agreement}`);
    if (precision === 'fp32') assert.ok(result.maxAbsDiff <= vectors.tolerance.fp32.max_abs_diff_probabilities, `max diff ${result.maxAbsDiff}`);
    assert.ok(result.pass);
  });
}
