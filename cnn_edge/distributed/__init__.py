"""The Ray engine: `cnn-edge predict --engine ray` on Ray Data.

Imports Ray, pyarrow and fsspec (the `ray` extra), inside functions only; torch-free and onnx-free.
May import core, runtime and prediction: it only makes rows (prediction.rows.RowBatch) from the
runtime's own decoding and Predictor; the job, the sinks and the row schema are prediction's.

    config    RayOptions (what only Ray takes) and the plan derived from the cluster's resources
    sources   inputs: local paths and object-store URIs; reading their bytes
    stages    what runs on the cluster: decode+preprocess tasks, the ONNX Runtime actor
    engine    RayEngine: join or start a cluster, run the pipeline, yield rows
    output    -o checked before any work: writable, its bucket there
    watchdog  the local cluster a run starts dies with its driver (stdlib only)
"""
