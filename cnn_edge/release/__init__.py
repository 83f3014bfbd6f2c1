"""From a checkpoint to a release: export, validation, quantization, test vectors, the main job.

Imports onnx (and torch, through training); may import core, runtime and training.

    calibrate   a temperature fitted on the validation split, folded into the closing fc; ECE, NLL
    export      PyTorch to one self-contained ONNX file, checked
    validate    accuracy, calibration and parity with PyTorch
    robustness  test digits transformed the way real ones differ (numpy, deterministic)
    quantize    int8 with ONNX Runtime's tooling, guarded by accuracy; QuantConfig, QuantReport
    vectors     test vectors: PyTorch's outputs for MNIST test images
    publish     a release: its files, its record (pipeline.json) and its model card
    pipeline    the main job: train, calibrate, export, validate, quantize, publish
    requantize  pipeline --requantize: a release's int8 model made again, without training
"""
