"""Inference on one model: what `Predictor`, `predict`'s engines, `bench` and `demo` run on.

ONNX Runtime, numpy, Pillow and the standard library, plus core; never torch, onnx, Ray or any
other package of cnn_edge (tests/test_layout.py RULE, and the ruff.toml beside this file).

    onnx_model   load a model with ONNX Runtime, check it against the contract
    model_file   read a model file safely (size, protobuf framing) before ONNX Runtime sees it
    providers    choose an execution provider, never a silent CPU fall back
    compat       IR version, opsets, operators and Q/DQ types against what each runtime loads
    images       decode files, bytes, PIL images and arrays into grey pixels
    grey_png     the strict fast path for small plain 8-bit grey PNGs
    preprocess   make a grey picture look like an MNIST digit (the contract's preprocessing, by version)
    finder       mnist-v2: the one digit of a cluttered picture, or why there is none
    predictor    the Python API: Predictor(model).predict(images) -> Prediction; top_classes
    timing       latency and throughput of a callable or a model
    demo         the browser demo's HTTP server
"""
