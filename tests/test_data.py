import gzip

import numpy as np
import pytest

from cnn_edge.training.data import ENV_VAR, FILES, load_split, read_idx, resolve_data_dir, write_idx
from cnn_edge.core.errors import DataError
from conftest import write_mnist


def test_reads_gzipped_files(tiny_mnist):
    train = load_split("train", tiny_mnist)
    assert train.images.shape == (640, 28, 28) and train.images.dtype == np.uint8
    assert train.labels.shape == (640,) and train.labels.max() <= 9


def test_reads_plain_files_in_torchvision_layout(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw", compress=False)
    test = load_split("test", tmp_path)
    assert len(test) == 200


def test_idx_round_trip(tmp_path):
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path / "x", arr, compress=False)
    assert np.array_equal(read_idx(tmp_path / "x", 3), arr)


def test_flag_beats_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, "/from/env")
    assert str(resolve_data_dir(tmp_path)) == str(tmp_path)
    assert str(resolve_data_dir(None)) == "/from/env"


def test_environment_variable_is_used(monkeypatch, tiny_mnist):
    monkeypatch.setenv(ENV_VAR, str(tiny_mnist))
    assert len(load_split("test")) == 200


def test_missing_folder_names_it_and_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"nowhere.*--data-dir"):
        load_split("train", tmp_path / "nowhere")


def test_missing_file_is_named(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / (FILES[("test", "labels")] + ".gz")).unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_split("test", tmp_path)


def test_truncated_file_is_reported(tmp_path):
    write_mnist(tmp_path, compress=False)
    path = tmp_path / FILES[("train", "images")]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=FILES[("train", "images")]):
        load_split("train", tmp_path)


def test_truncated_gzip_is_reported(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / (FILES[("train", "images")] + ".gz")
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match=FILES[("train", "images")]):
        load_split("train", tmp_path)


def test_wrong_magic_is_reported(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / (FILES[("train", "labels")] + ".gz")).write_bytes(gzip.compress(b"hello world, not idx"))
    with pytest.raises(DataError, match=FILES[("train", "labels")]):
        load_split("train", tmp_path)


def test_label_count_mismatch_is_reported(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / (FILES[("test", "labels")] + ".gz"), np.zeros(3, np.uint8))
    with pytest.raises(DataError, match=r"\b200\b.*\b3\b"):
        load_split("test", tmp_path)


def test_offline_without_data_gives_a_clear_error(tmp_path, monkeypatch, no_env_data):
    # Real torchvision download attempt: this machine (and CI) is offline.
    monkeypatch.chdir(tmp_path)
    try:
        load_split("test")
    except DataError as exc:
        assert "datasets" in str(exc) and "--data-dir" in str(exc)  # where it tried, and the fix
    else:  # online: torchvision's normal download worked, which is the other half of the contract
        assert (tmp_path / "datasets" / "MNIST" / "raw").is_dir()
