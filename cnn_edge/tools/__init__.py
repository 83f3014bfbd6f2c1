"""Tools around the stages: benchmarks, comparisons, peers, plots. May import every package but
prediction, distributed and cli.

    bench          ONNX Runtime, the OpenVINO runtime and PyTorch eager timed side by side
    compare        every architecture through the pipeline
    openvino_peer  the OpenVINO runtime itself, as a peer for bench and the portability tests
    plotting       matplotlib for --plot
"""
