"""Batch prediction past one machine: `cnn-edge predict --engine ray` on Ray Data.

Outside cnn_edge/runtime/ (it imports Ray, pyarrow and fsspec, the `ray` extra), torch-free and
onnx-free all the same, and built from the runtime's own functions: the same decoding and
preprocessing (fed bytes), the same Predictor, the same rows. Ray is imported inside functions
only, so nothing here loads it until a run on Ray starts.

    config    RayConfig and the plan (batch size, actors, decode tasks) derived from the cluster
    sources   inputs: local paths and object-store URIs; reading their bytes
    stages    what runs on the cluster: decode+preprocess tasks, the ONNX Runtime actor
    outputs   the output directory: part files, the _SUCCESS manifest, --resume
    engine    connect or start a cluster, run the pipeline, write, summarise
"""
