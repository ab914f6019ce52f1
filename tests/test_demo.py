"""The demo end to end, at toy size: outputs, label-free channel choice, baseline."""
import json

from objectness import cli
from objectness.tools.demo import demo_config, run_demo


def test_demo_writes_overlays_channels_and_a_summary(tmp_path, tiny_overrides):
    overrides = [o for o in tiny_overrides if not o.startswith("train.steps")]
    cfg = demo_config(minutes=5, steps=3, overrides=overrides)
    summary = run_demo(cfg, tmp_path, held_out_videos=2)
    assert summary["training"]["step"] == 3
    assert 0 <= summary["objectness_channel"] < cfg.model.num_segments
    assert 0 <= summary["mean_iou"] <= 1 and 0 < summary["centre_prior_mean_iou"] < 1
    assert summary["best_channel_mean_iou"] >= summary["mean_iou"]
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 2
    assert len(list((tmp_path / "channels").glob("*.png"))) == 2
    assert json.loads((tmp_path / "summary.json").read_text())["objectness_channel"] == summary["objectness_channel"]


def test_demo_refuses_to_overwrite_an_earlier_run(tmp_path, tiny_overrides, capsys):
    sets = [arg for o in tiny_overrides if not o.startswith("train.steps") for arg in ("--set", o)]
    assert cli.main(["demo", "--out", str(tmp_path), "--steps", "1", *sets]) == 0
    assert cli.main(["demo", "--out", str(tmp_path), "--steps", "1", *sets]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_demo_evaluates_an_existing_checkpoint_without_training(tmp_path, tiny_overrides):
    sets = [arg for o in tiny_overrides if not o.startswith("train.steps") for arg in ("--set", o)]
    assert cli.main(["demo", "--out", str(tmp_path / "first"), "--steps", "1", *sets]) == 0
    run = tmp_path / "first" / "run"
    stamp = (run / "last.pt").stat().st_mtime_ns
    assert cli.main(["demo", "--checkpoint", str(run), "--out", str(tmp_path / "again")]) == 0
    summary = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert "training" not in summary and summary["checkpoint"] == str(run)
    assert (run / "last.pt").stat().st_mtime_ns == stamp


def test_demo_evaluation_refuses_to_overwrite_a_summary(tmp_path, tiny_overrides, capsys):
    sets = [arg for o in tiny_overrides if not o.startswith("train.steps") for arg in ("--set", o)]
    assert cli.main(["demo", "--out", str(tmp_path / "first"), "--steps", "1", *sets]) == 0
    run = str(tmp_path / "first" / "run")
    assert cli.main(["demo", "--checkpoint", run, "--out", str(tmp_path / "first")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["demo", "--checkpoint", run, "--out", str(tmp_path / "first"), "--overwrite"]) == 0
