"""Shared and light: what every other package may import, and which imports none of them.

Standard library and numpy only (never torch, onnx, ONNX Runtime or Ray): the architecture
descriptions, constants, the ONNX contract, typed errors, files in and out, reports, released file
names, the machine's description and the figures measured elsewhere.

    arch        architectures as plain layer lists: shapes, parameters, multiply-adds
    artifacts   released file names and the release folder
    constants   image size, classes, normalisation
    contract    the ONNX I/O contract, declared once
    errors      typed errors; the CLI maps each to one line and an exit code
    files       inputs opened safely (regular files only, never blocking); outputs written atomically
    machine     CPU name and machine description for reports
    references  figures measured elsewhere (the seed notebook's), with their sources
    reports     the one JSON serialiser of the typed reports
"""
