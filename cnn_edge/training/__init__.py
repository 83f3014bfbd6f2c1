"""The training side: MNIST, the PyTorch networks, checkpoints, the training loop. Imports torch.

May import core only (tests/test_layout.py RULE).

    data        MNIST: find it, read the IDX files strictly, or download it
    recipes     TrainConfig, the named recipes, the learning-rate schedule (torch-free)
    model       the PyTorch networks, built from core.arch
    checkpoint  safetensors + JSON checkpoints, and the resume state
    train       the training loop; returns a TrainResult
"""
