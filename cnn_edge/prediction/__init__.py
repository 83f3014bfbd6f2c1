"""Batch prediction: one job, two engines, three sinks, one row schema. Torch-free.

May import core and runtime (tests/test_layout.py RULE); the Ray engine (cnn_edge/distributed/)
builds on it.

    job      run_prediction(model, paths, cfg, sink, engine) -> PredictSummary: the one orchestration
    config   PredictConfig: what every engine takes, checked once
    inputs   files, folders and glob patterns -> an ordered list of paths
    rows     RowBatch and RowSchema: the columns, top-k, CSV/JSONL/Parquet, kept rows for --resume
    sinks    ResultFile (.partial, --resume), Stream (stdout), PartFolder (part files, local or s3://)
    saved_inputs  --save-inputs DIR: the 28x28 input the model saw for each row, as a PNG file
    local    the local engine: worker processes decode (and on the CPU, infer)
    workers  the worker processes, replaced when one dies, without losing an image
"""
