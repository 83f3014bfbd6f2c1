"""The inference side of cnn-edge: everything `predict`, `bench` on ONNX models, `demo` and the
`Predictor` API need, and nothing else.

The boundary: modules here import ONNX Runtime, numpy, Pillow and the standard library, plus the
shared torch-free modules one level up (constants, contract, errors, io_utils, artifacts, machine,
reports). They never import torch, torchvision, onnx or a training module; a ruff rule
(pyproject.toml) and tests/test_layout.py enforce it.

    onnx_model   load a model with ONNX Runtime, check it against the contract
    providers    choose an execution provider, never a silent CPU fall back
    compat       will a runtime load this file (IR version, opset), read without onnx
    images       decode files, PIL images and arrays into grey pixels
    preprocess   make a grey picture look like an MNIST digit (the contract's preprocessing)
    predictor    the Python API: Predictor(model).predict(images) -> Prediction
    inputs       files, folders and glob patterns -> an ordered list of paths
    batch        batch prediction over files: worker processes decode, the main process infers
    results      CSV/JSONL rows streamed to a partial file, resumable
    timing       latency and throughput of a callable or a model
    demo         the browser demo's HTTP server
"""
