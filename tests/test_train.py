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


@pytest.mark.slow  # trains the tiny network two or three times: the full suite keeps it, the fast tier need not
def test_same_seed_same_weights(tiny_data, tmp_path):
    cfg = make_config("default", **SMALL)
    a = train(cfg, tmp_path / "a", tiny_data, device="cpu").checkpoint
    b = train(cfg, tmp_path / "b", tiny_data, device="cpu").checkpoint
    wa, wb = load_file(a), load_file(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow  # trains the tiny network two or three times: the full suite keeps it, the fast tier need not
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


@pytest.mark.slow  # trains three short runs
def test_resume_with_every_new_ingredient_matches_an_uninterrupted_run(tiny_data, tmp_path):
    """Shear, elastic distortion, stroke width and erasing draw from the epoch's generator: a run
    cut after its first epoch and resumed ends with the weights of one never cut, and the
    ingredients change what is learnt (the same seed without them ends elsewhere)."""
    cfg = make_config("default", **SMALL, max_shear=15.0, elastic_alpha=34.0, stroke_prob=0.5, erase_prob=0.5)
    full = load_file(train(cfg, tmp_path / "full", tiny_data, device="cpu").checkpoint.parent / "last.safetensors")

    def stop_after_first(model, result):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "cut", tiny_data, device="cpu", on_epoch_end=stop_after_first)
    train(cfg, tmp_path / "cut", tiny_data, device="cpu", resume=True)
    resumed = load_file(tmp_path / "cut" / "last.safetensors")
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    plain = load_file(train(make_config("default", **SMALL), tmp_path / "plain", tiny_data, device="cpu").checkpoint.parent
                      / "last.safetensors")
    assert not all(torch.equal(full[k], plain[k]) for k in full)


def test_resume_of_a_run_from_before_the_new_ingredients(tiny_data, tiny_run, tmp_path):
    """A training state whose settings predate max_shear, elastic_*, stroke_prob and erase_* resumes
    under today's default recipe: those fields were off then, as their defaults are."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    run = tmp_path / "old"
    shutil.copytree(tiny_run.parent, run)
    with safe_open(str(run / "resume.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for key in ("max_shear", "elastic_alpha", "elastic_sigma", "stroke_prob", "erase_prob", "erase_area"):
        del meta["train"][key]
    save_file(tensors, str(run / "resume.safetensors"), metadata={"meta": json.dumps(meta)})
    cfg = make_config("default", epochs=1, batch_size=64, val_size=64)
    assert train(cfg, run, tiny_data, device="cpu", resume=True).best_epoch == 1  # finished: nothing left to train
    with pytest.raises(CheckpointError, match="other settings"):  # but an ingredient it did not use is another recipe
        train(make_config("default", epochs=1, batch_size=64, val_size=64, max_shear=15.0), run, tiny_data,
              device="cpu", resume=True)


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
    assert make_config(arch="spec").recipe == make_config(arch=NAMED["spec"]).recipe == make_config().recipe == "v2"
    assert make_config(arch="conv8-gap-fc10").recipe == make_config(arch="notebook-cnn").recipe == "default"
    assert make_config("default", arch="edge").recipe == "default" and make_config("seed", arch="edge").recipe == "seed"


def test_v2_is_the_default_with_shear_stroke_width_noise_and_more_epochs():
    """Recipe v2 changes only what docs/training.md says it does; elastic distortion and erasing,
    which lost to the default in the ablation, stay off."""
    from dataclasses import asdict

    v2, default = asdict(make_config("v2")), asdict(make_config("default"))
    changed = {k: v2[k] for k in v2 if v2[k] != default[k]}
    assert changed == {"recipe": "v2", "epochs": 30, "max_shear": 15.0, "stroke_prob": 0.5, "noise_prob": 0.5}


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


def test_weight_average_follows_batch_normalization_statistics():
    """The average's running mean and variance move with the network's, as its parameters do: left at
    their initial mean 0 and variance 1, an average with batch normalization evaluates far off."""

    torch.manual_seed(0)
    net = MnistNet(ModelConfig.of("conv4-bn-gap-fc10")).train()
    ema = WeightAverage(net, decay=0.999)
    with torch.no_grad():
        net(torch.rand(8, 1, 28, 28) * 255)  # a training step's forward pass updates the statistics
    ema.update(net, step=0)  # decay ramps from 1/10 at step 0: 10% old, 90% new
    bn, avg = net.layers.batchnorm1, ema.model.layers.batchnorm1
    assert torch.allclose(avg.running_mean, 0.9 * bn.running_mean) and bn.running_mean.abs().max() > 0.1
    assert torch.allclose(avg.running_var, 0.1 + 0.9 * bn.running_var)
    assert int(avg.num_batches_tracked) == int(bn.num_batches_tracked) == 1


def test_resume_of_a_run_from_before_layer_strings(tiny_data, tiny_run, tmp_path):
    """A training state that recorded the model as {"arch": "spec"} resumes under today's config
    (name and layer string): the same architecture, spelt two ways."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    run = tmp_path / "old"
    shutil.copytree(tiny_run.parent, run)
    with safe_open(str(run / "resume.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert meta["model"]["layers"]  # written today: name and layers
    meta["model"] = {"arch": "spec"}
    save_file(tensors, str(run / "resume.safetensors"), metadata={"meta": json.dumps(meta)})
    cfg = make_config("default", epochs=1, batch_size=64, val_size=64)
    result = train(cfg, run, tiny_data, device="cpu", resume=True)  # finished: nothing left to train
    assert result.best_epoch == 1 and len(result.history) == 1


def test_resume_with_another_architecture_is_refused_before_loading_weights(tiny_data, tiny_run):

    cfg = make_config("default", epochs=1, batch_size=64, val_size=64)
    with pytest.raises(CheckpointError, match=r"architecture spec \(conv32-conv32-pool.*not logreg \(fc10\)"):
        train(cfg, tiny_run.parent, tiny_data, device="cpu", resume=True, model_config=ModelConfig.of("logreg"))


def test_batch_normalization_never_trains_on_a_batch_of_one(tiny_data, tmp_path):
    """65 training images in batches of 64 would leave one image alone in the last batch: batch
    normalization after global average pooling has one value per channel there and cannot train.
    That image waits for the next epoch's shuffle."""
    from cnn_edge.training.train import steps_per_epoch

    assert [steps_per_epoch(n, 64) for n in (64, 65, 66, 128, 129)] == [1, 1, 2, 2, 2]
    cfg = make_config("default", epochs=1, batch_size=64, limit_train=65, val_size=0, ema_decay=0.0)
    result = train(cfg, tmp_path, tiny_data, device="cpu", model_config=ModelConfig.of("conv4-gap-bn-fc10"))
    assert result.checkpoint.is_file()
