import math

import pytest
import torch
import yaml
from safetensors.torch import load_file

import objectness.training.step as step_module
from objectness.config import TrainConfig, load_config, to_dict
from objectness.model.amd import AMD
from objectness.training.logger import read_metrics
from objectness.training.run import poly_lr
from objectness.training.step import make_optimizer
from objectness.training.train import PairStream, train


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_overrides):
    """A 4-step run with a checkpoint and a panel every 2 steps."""
    cfg = load_config(None, [*tiny_overrides, "train.checkpoint_every=2", "train.panel_every=2"])
    run_dir = tmp_path_factory.mktemp("run") / "tiny"
    return cfg, run_dir, train(cfg, run_dir)


def test_poly_schedule_starts_at_lr_and_ends_at_min_lr(tiny_config):
    cfg = tiny_config.train
    optimizer, scheduler = make_optimizer(torch.nn.Linear(2, 2), cfg)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(cfg.steps):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(cfg.lr)
    assert lrs[-1] == pytest.approx(cfg.min_lr)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_poly_schedule_follows_the_power_law():
    cfg = TrainConfig(steps=10, lr=1e-3, min_lr=1e-5, poly_power=0.9)
    assert poly_lr(5, cfg) == pytest.approx((1e-3 - 1e-5) * 0.5**0.9 + 1e-5)


def test_each_process_reads_its_own_slice_of_one_stream():
    rank0 = list(PairStream(start_step=1, steps=3, batch_size=2, rank=0, world=2))
    rank1 = list(PairStream(start_step=1, steps=3, batch_size=2, rank=1, world=2))
    assert rank0 == [4, 5, 8, 9]
    assert rank1 == [6, 7, 10, 11]


def test_run_writes_the_resolved_config(finished_run):
    cfg, run_dir, _ = finished_run
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == to_dict(cfg)


def test_run_logs_every_step_with_each_loss_term(finished_run):
    _, run_dir, _ = finished_run
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for key in ("loss", "photometric_0", "lr", "pairs_per_s", "bad_frames"):
        assert all(math.isfinite(r[key]) for r in records), key


def test_checkpoint_loads_with_weights_only(finished_run):
    cfg, run_dir, _ = finished_run
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert state["step"] == 4
    assert state["config"] == to_dict(cfg)
    assert state["metadata"]["objectness_channel"] is None
    assert {"model", "optimizer", "scheduler", "rng"} <= set(state)


def test_weights_are_saved_as_safetensors(finished_run):
    _, run_dir, _ = finished_run
    weights = load_file(run_dir / "model.safetensors")
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert weights.keys() == state["model"].keys()
    assert all(torch.equal(weights[k], state["model"][k]) for k in weights)


def test_panels_are_written_every_panel_every_steps(finished_run):
    _, run_dir, _ = finished_run
    panels = sorted(p.name for p in (run_dir / "panels").iterdir())
    assert panels == ["step-0000002.png", "step-0000004.png"]


def test_summary_reports_steps_loss_and_bad_frames(finished_run):
    _, run_dir, summary = finished_run
    last = read_metrics(run_dir)[-1]
    assert summary["step"] == 4
    assert summary["loss"] == last["loss"]
    assert summary["bad_frames"] == last["bad_frames"] == 0


def test_existing_run_folder_is_refused(finished_run):
    cfg, run_dir, _ = finished_run
    with pytest.raises(FileExistsError, match="--overwrite"):
        train(cfg, run_dir)


def test_folder_that_is_not_a_run_is_never_deleted(tmp_path, tiny_config):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="holds no run"):
        train(tiny_config, tmp_path, overwrite=True)
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_overwrite_starts_the_run_again(tmp_path, tiny_overrides):
    cfg = load_config(None, [*tiny_overrides, "train.steps=1"])
    train(cfg, tmp_path / "run")
    (tmp_path / "run" / "stale.txt").write_text("from the old run")
    train(cfg, tmp_path / "run", overwrite=True)
    assert not (tmp_path / "run" / "stale.txt").exists()
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1]


def test_resume_reproduces_the_uninterrupted_run(tmp_path, tiny_overrides, monkeypatch):
    cfg = load_config(None, [*tiny_overrides, "train.steps=6", "train.checkpoint_every=3"])
    train(cfg, tmp_path / "straight")

    calls = []
    real_step = step_module.training_step

    def interrupted_step(*args):
        calls.append(1)
        if len(calls) == 5:  # step 5, after the checkpoint at 3 and the log line of step 4
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(step_module, "training_step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed")
    monkeypatch.setattr(step_module, "training_step", real_step)
    summary = train(cfg, tmp_path / "resumed", resume=True)

    straight, resumed = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "resumed")
    assert summary["start_step"] == 3
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in resumed[3:]] == [r["loss"] for r in straight[3:]]
    final_straight = load_file(tmp_path / "straight" / "model.safetensors")
    final_resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.equal(final_straight[k], final_resumed[k]) for k in final_straight)


def test_time_limit_stops_early_with_a_checkpoint(tmp_path, tiny_overrides):
    cfg = load_config(None, [*tiny_overrides, "train.steps=1000", "train.time_limit=1.0e-6"])
    summary = train(cfg, tmp_path / "run")
    assert summary["step"] == 1
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 1
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_stop_after_stops_on_the_schedule_of_train_steps(tmp_path, tiny_overrides):
    cfg = load_config(None, [*tiny_overrides, "train.steps=1000", "train.stop_after=3"])
    summary = train(cfg, tmp_path / "run")
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert summary["step"] == state["step"] == 3
    assert state["scheduler"]["last_epoch"] == 3
    assert read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]["lr"] == pytest.approx(poly_lr(2, cfg.train))


def test_resume_refuses_a_checkpoint_of_another_model(finished_run, tiny_overrides, tmp_path):
    from objectness.model.checkpoint import CheckpointError

    _, run_dir, _ = finished_run
    other = load_config(None, [*tiny_overrides, "model.num_segments=3"])
    with pytest.raises(CheckpointError, match="model.num_segments"):
        train(other, run_dir, resume=True)


@pytest.mark.slow
def test_training_lowers_the_loss_on_synthetic_video(tmp_path, tiny_overrides):
    cfg = load_config(None, [*tiny_overrides, "train.steps=200"])
    train(cfg, tmp_path / "run")
    losses = [r["loss"] for r in read_metrics(tmp_path / "run")]
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.8 * first  # 0.61 on the reference machine; pairs differ a lot, hence the margin


def test_appearance_lr_gives_f_a_its_own_decaying_lr(tiny_config):
    tiny_config.train.appearance_lr = 1e-3
    model = AMD(tiny_config.model)
    optimizer, scheduler = make_optimizer(model, tiny_config.train)
    rest, appearance = optimizer.param_groups
    assert {id(p) for p in appearance["params"]} == {id(p) for p in model.appearance.parameters()}
    assert (rest["lr"], appearance["lr"]) == (tiny_config.train.lr, 1e-3)
    optimizer.step()
    scheduler.step()
    assert appearance["lr"] / rest["lr"] == pytest.approx(1e-3 / tiny_config.train.lr)
    assert appearance["lr"] < 1e-3


def test_init_starts_from_the_weights_of_another_run(finished_run, tiny_overrides, tmp_path):
    _, run_dir, _ = finished_run
    cfg = load_config(None, [*tiny_overrides, "train.steps=1", "train.lr=1e-12", "train.min_lr=1e-12",
                             f"train.init={run_dir / 'model.safetensors'}"])
    train(cfg, tmp_path / "tuned")
    before, after = load_file(run_dir / "model.safetensors"), load_file(tmp_path / "tuned" / "model.safetensors")
    parameters = [name for name, _ in AMD(cfg.model).named_parameters()]
    for name in parameters:  # the first run moved them by ~1e-4 from the seed's initialisation
        torch.testing.assert_close(after[name], before[name], atol=1e-9, rtol=0)
    assert yaml.safe_load((tmp_path / "tuned" / "config.yaml").read_text())["train"]["init"] == cfg.train.init


def test_init_refuses_weights_of_another_model(finished_run, tiny_overrides, tmp_path):
    from objectness.model.checkpoint import CheckpointError

    _, run_dir, _ = finished_run
    cfg = load_config(None, [*tiny_overrides, "model.num_segments=3", f"train.init={run_dir}"])
    with pytest.raises(CheckpointError, match="model.num_segments"):
        train(cfg, tmp_path / "tuned")
    assert not (tmp_path / "tuned").exists()


def test_bf16_training_lowers_the_loss_as_fp32_does(tmp_path, tiny_overrides):
    """The same pairs, weights and seed in both precisions: bf16 autocast (the loss in fp32) learns alike."""
    curves = {}
    for precision in ("fp32", "bf16"):
        cfg = load_config(None, [*tiny_overrides, "train.steps=80", f"train.precision={precision}"])
        train(cfg, tmp_path / precision)
        losses = [r["loss"] for r in read_metrics(tmp_path / precision)]
        curves[precision] = (sum(losses[:10]) / 10, sum(losses[-10:]) / 10)
    (fp32_first, fp32_last), (bf16_first, bf16_last) = curves["fp32"], curves["bf16"]
    assert bf16_last < 0.9 * bf16_first and fp32_last < 0.9 * fp32_first
    assert abs(bf16_first - fp32_first) < 0.02 * fp32_first  # the same start, to bf16's rounding
    assert abs(bf16_last - fp32_last) < 0.1 * (fp32_first - fp32_last) + 0.02 * fp32_last


def test_channels_last_trains_the_same_model(tmp_path, tiny_overrides):
    """A memory layout, not a recipe: the losses of a run in channels-last equal those in NCHW to rounding."""
    losses = {}
    for layout in ("false", "true"):
        cfg = load_config(None, [*tiny_overrides, "train.steps=3", f"train.channels_last={layout}"])
        train(cfg, tmp_path / layout)
        losses[layout] = [r["loss"] for r in read_metrics(tmp_path / layout)]
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-3)
