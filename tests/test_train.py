import json

import pytest
import torch
from safetensors.torch import load_file

from cnn_edge.core.errors import CheckpointError, ConfigError
from cnn_edge.training.recipes import RECIPES, TrainConfig, held_out_size, lr_at, make_config, sized_for
from cnn_edge.training.model import MnistNet, ModelConfig
from cnn_edge.training.train import WeightAverage, train

SMALL = dict(epochs=2, batch_size=64, val_size=64, limit_train=320)


def test_smoke_run_learns_and_writes_checkpoints(tiny_data, tiny_run):
    meta = json.loads(tiny_run.with_suffix(".json").read_text())
    assert meta["test_accuracy"] > 0.5  # the synthetic classes are easy; chance is 0.1
    assert meta["train"]["recipe"] == "default" and meta["selected_epoch"] == 1
    for name in ("last.safetensors", "last.json", "resume.safetensors"):
        assert (tiny_run.parent / name).is_file()


def test_held_out_splits_are_sized_for_the_data_once():
    """One rule for the validation split and the int8 guard: as asked while it leaves at least half
    of the images to train on, else a tenth of them, with a note naming where the count comes from."""
    assert held_out_size(60_000, 5_000) == held_out_size(60_000, 5_000, what="x") and held_out_size(60_000, 5_000).size == 5_000
    assert held_out_size(640, 0).size == 0 and held_out_size(640, 64).note is None
    small = held_out_size(640, 5_000, what="the int8 accuracy guard", option=None)
    assert small.size == 64 and small.note == "640 training images: holding out 64 images for the int8 accuracy guard instead of 5,000"
    cfg, note = sized_for(make_config("default", limit_train=2_000), 60_000)
    assert cfg.val_size == 200 and note == "--limit-train 2000: holding out 200 images for validation instead of 5,000 (set --val-size to choose)"
    assert sized_for(cfg, 60_000) == (cfg, None)  # its own answer stands
    assert sized_for(make_config("seed", limit_train=100), 640)[0].val_size == 0  # none asked, none taken


def test_a_library_call_takes_a_smoke_runs_data(tiny_data, tmp_path):
    """train() on --limit-train-like data with the recipe's 5,000-image split: shrunk, not refused."""
    result = train(make_config("default", epochs=1, batch_size=64, limit_train=200), tmp_path, tiny_data, device="cpu")
    meta = json.loads(result.checkpoint.with_suffix(".json").read_text())
    assert meta["train"]["val_size"] == 20 and result.best_val_accuracy is not None


def test_same_seed_same_weights(tiny_data, tmp_path):
    cfg = make_config("default", **SMALL)
    a = train(cfg, tmp_path / "a", tiny_data, device="cpu").checkpoint
    b = train(cfg, tmp_path / "b", tiny_data, device="cpu").checkpoint
    wa, wb = load_file(a), load_file(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_after_interrupt_matches_an_uninterrupted_run(tiny_data, tmp_path):
    cfg = make_config("default", **SMALL)
    full = load_file(train(cfg, tmp_path / "full", tiny_data, device="cpu").checkpoint.parent / "last.safetensors")

    def stop_after_first(model, result):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "cut", tiny_data, device="cpu", on_epoch_end=stop_after_first)
    assert json.loads((tmp_path / "cut" / "last.json").read_text())["epoch"] == 1
    train(cfg, tmp_path / "cut", tiny_data, device="cpu", resume=True)
    resumed = load_file(tmp_path / "cut" / "last.safetensors")
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_existing_run_needs_resume(tiny_data, tiny_run):
    cfg = make_config("default", epochs=1, batch_size=64, val_size=64)
    with pytest.raises(CheckpointError, match="--resume"):
        train(cfg, tiny_run.parent, tiny_data, device="cpu")


def test_resume_with_other_settings_is_refused(tiny_data, tiny_run):
    cfg = make_config("default", epochs=1, batch_size=32, val_size=64)
    with pytest.raises(CheckpointError, match="resume.safetensors"):
        train(cfg, tiny_run.parent, tiny_data, device="cpu", resume=True)


def test_seed_recipe_is_the_notebook():
    cfg = make_config("seed")
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.augment, cfg.schedule) == (3, 100, 1e-3, False, "constant")


def test_an_architecture_trains_with_its_default_recipe():
    """arch edge (by name, or its layer string) picks the edge recipe; any other the default one;
    a recipe named explicitly wins."""
    from cnn_edge.core.arch import NAMED

    assert make_config(arch="edge").recipe == make_config(arch=NAMED["edge"]).recipe == "edge"
    edge = make_config(arch="edge", epochs=3)
    assert (edge.epochs, edge.batch_size) == (3, RECIPES["edge"].batch_size) and edge.batch_size != RECIPES["default"].batch_size
    assert make_config(arch="spec").recipe == make_config(arch="conv8-gap-fc10").recipe == make_config().recipe == "default"
    assert make_config("default", arch="edge").recipe == "default" and make_config("seed", arch="edge").recipe == "seed"


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="--epochs.*0"):
        make_config("default", epochs=0)
    with pytest.raises(ConfigError, match="'fast'"):
        make_config("fast")


def test_onecycle_warms_up_then_decays():
    cfg = TrainConfig(lr=1.0)
    lrs = [lr_at(cfg, s, 100) for s in range(100)]
    peak = max(range(100), key=lrs.__getitem__)
    assert lrs[0] < 0.1 and lrs[peak] == pytest.approx(1.0, rel=0.05) and lrs[-1] < 0.01
    assert 15 <= peak <= 25


def test_the_weight_average_follows_batch_normalization_statistics():
    """The average is what is evaluated and released: with its running statistics stuck at the
    initial network's (mean 0, variance 1) a network with batch normalization evaluated wrongly."""
    torch.manual_seed(0)
    model = MnistNet(ModelConfig.of("conv4-bn-gap-fc10"))
    ema = WeightAverage(model, 0.9)
    model.train()
    for step in range(3):
        model(torch.rand(8, 1, 28, 28) * 255)  # updates the live running statistics
        ema.update(model, step)
    live, avg = model.layers.batchnorm1, ema.model.layers.batchnorm1
    assert torch.allclose(avg.running_mean, live.running_mean, rtol=0.5) and not torch.equal(avg.running_mean, torch.zeros(4))
    assert not torch.equal(avg.running_var, torch.ones(4)) and int(avg.num_batches_tracked) == 3
