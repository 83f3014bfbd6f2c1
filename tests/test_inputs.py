"""Collecting inputs: files, folders, --recursive, glob patterns; order kept, each path once."""
from __future__ import annotations


import pytest

from cnn_edge.prediction.inputs import collect_inputs


@pytest.fixture
def tree(tmp_path):
    for rel in ("a/2.png", "a/1.jpg", "a/notes.txt", "a/sub/3.webp", "b/4.PNG", "top.gif"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    return tmp_path


def test_folder_takes_its_images_sorted(tree):
    assert collect_inputs([str(tree / "a")]) == [str(tree / "a/1.jpg"), str(tree / "a/2.png")]


def test_recursive_goes_into_sub_folders(tree):
    assert collect_inputs([str(tree / "a")], recursive=True)[-1] == str(tree / "a/sub/3.webp")


def test_glob_patterns_and_order_of_arguments(tree):
    got = collect_inputs([str(tree / "b/*.PNG"), str(tree / "top.gif"), str(tree / "a/*.png")])
    assert got == [str(tree / "b/4.PNG"), str(tree / "top.gif"), str(tree / "a/2.png")]
    assert collect_inputs([str(tree / "**/*.webp")], recursive=True) == [str(tree / "a/sub/3.webp")]


def test_named_files_are_taken_whatever_their_name_and_once(tree):
    notes = str(tree / "a/notes.txt")
    assert collect_inputs([notes, notes, str(tree / "missing.png")]) == [notes, str(tree / "missing.png")]


def test_missing_empty_and_unmatched_arguments_each_stay_as_a_row(tree):
    (tree / "empty").mkdir()
    specs = [str(tree / "*.tiff"), str(tree / "empty"), str(tree / "missing.png")]
    assert collect_inputs(specs) == specs  # each gets a row that says what was wrong


def test_a_tree_a_thousand_levels_deep_is_walked(tmp_path):
    """Hostile inputs round 2: no RecursionError, with -r or with **; the deepest file is found."""
    import os

    deep = tmp_path / "t"
    path = deep
    os.mkdir(deep)
    for _ in range(1000):  # one level at a time: pathlib's own mkdir(parents=True) recurses
        path = path / "d"
        os.mkdir(path)
    (path / "x.png").write_bytes(b"not really a png")
    (deep / "top.png").write_bytes(b"not really a png")
    try:
        found = collect_inputs([str(deep)], recursive=True)
        assert found[0] == str(deep / "top.png") and found[-1] == str(path / "x.png") and len(found) == 2
        assert collect_inputs([f"{deep}/**/*.png"], recursive=True) == sorted(found)
    finally:  # from the bottom up: pytest's own clean-up of old temporary folders recurses, and would fail on it
        (path / "x.png").unlink()
        while path != deep:
            os.rmdir(path)
            path = path.parent
