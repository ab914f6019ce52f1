"""Faults while training: a run folder held by its process, signals, a loss that diverges, a full or
read-only output place. Each ends in one line and a non-zero code, and no step that was saved is lost."""
import errno
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

import objectness.model.checkpoint as checkpoint_module
from objectness.cli import main
from objectness.model.checkpoint import load_checkpoint
from objectness.model.warp import range_map
from objectness.training.logger import read_metrics
from objectness.training.run import LOCK


def _messages(err: str) -> list:
    """The command's own lines on stderr (progress bars and log records left out)."""
    return [line for line in err.splitlines() if line.startswith("objectness:")]


def _train_args(tiny_overrides, out, *extra):
    args = ["train", "--out", str(out)]
    for override in (*tiny_overrides, *extra):
        args += ["--set", override]
    return args


def _start_training(tiny_overrides, out, *extra):
    """`objectness train` in another process, returned once it has written its first log line."""
    command = [sys.executable, "-m", "objectness.cli", *_train_args(tiny_overrides, out, *extra)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not read_metrics(out):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"training did not start: {process.communicate()[1][-2000:]}")
        time.sleep(0.2)
    return process


@pytest.fixture
def live_run(tmp_path, tiny_overrides):
    process = _start_training(tiny_overrides, tmp_path / "run", "train.steps=100000")
    yield tmp_path / "run", process
    if process.poll() is None:
        process.kill()
        process.communicate()


def test_a_second_process_on_a_run_folder_stops_with_a_line_naming_the_holder(live_run, tiny_overrides, capsys):
    run_dir, process = live_run
    lines_before = len(read_metrics(run_dir))
    for flag in ([], ["--resume"]):
        assert main(_train_args(tiny_overrides, run_dir, "train.steps=100000") + flag) == 2
        messages = _messages(capsys.readouterr().err)
        assert len(messages) == 1 and f"in use by process {process.pid}" in messages[0]
    assert process.poll() is None  # the holder trains on
    records = read_metrics(run_dir)
    assert len(records) >= lines_before and [r["step"] for r in records] == sorted({r["step"] for r in records})


def test_sigterm_stops_after_a_step_with_a_checkpoint_and_the_run_resumes(live_run, tiny_overrides):
    run_dir, process = live_run
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM" in err and "--resume" in err
    step = load_checkpoint(run_dir / "last.pt")["step"]
    assert step >= 1 and read_metrics(run_dir)[-1]["step"] == step
    assert main(_train_args(tiny_overrides, run_dir, f"train.steps={step + 2}") + ["--resume"]) == 0
    assert [r["step"] for r in read_metrics(run_dir)][-2:] == [step + 1, step + 2]


def test_a_diverging_loss_stops_with_one_line_and_keeps_the_last_checkpoint(tmp_path, tiny_overrides, capsys,
                                                                             monkeypatch):
    import objectness.training.step as step_module

    real_step = step_module.training_step
    calls = []

    def diverging(*args):
        loss, terms, out = real_step(*args)
        calls.append(1)
        return (loss * float("nan") if len(calls) >= 3 else loss), terms, out

    monkeypatch.setattr(step_module, "training_step", diverging)
    code = main(_train_args(tiny_overrides, tmp_path / "run", "train.checkpoint_every=2", "train.steps=6"))
    messages = _messages(capsys.readouterr().err)
    assert code == 1 and len(messages) == 1
    assert "loss is NaN at step 3" in messages[0] and "checkpoint of step 2 is kept" in messages[0]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_a_flow_that_is_not_finite_lands_nowhere_in_the_range_map():
    flow = torch.zeros(1, 2, 4, 5)
    flow[0, 0, 1, 1], flow[0, 1, 2, 2] = float("nan"), float("inf")
    covered = range_map(flow)[0, 0]
    assert covered[1, 1] == 0 and covered[2, 2] == 0 and covered[0, 0] == 1


@pytest.mark.parametrize("failure, words", [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    (RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/0: "
                  "file write failed"), "is the disk full"),
])
def test_a_full_disk_at_a_checkpoint_is_one_line_and_the_last_checkpoint_stays(tmp_path, tiny_overrides, capsys,
                                                                                monkeypatch, failure, words):
    real_save = torch.save
    saves = []

    def save_until_full(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:
            raise failure
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_until_full)
    assert main(_train_args(tiny_overrides, tmp_path / "run", "train.checkpoint_every=2", "train.steps=6")) == 2
    messages = _messages(capsys.readouterr().err)
    assert len(messages) == 1 and words in messages[0] and str(tmp_path / "run" / "last.pt") in messages[0]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2
    assert not list((tmp_path / "run").glob(".last.pt.*"))  # no temporary file left behind


def test_a_read_only_output_place_is_one_line(tmp_path, tiny_overrides, capsys, monkeypatch):
    """A file system mounted read-only refuses the run folder (as root too, which chmod does not stop)."""
    import pathlib

    real_mkdir = pathlib.Path.mkdir

    def read_only_mkdir(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path / "mounted")):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only_mkdir)
    assert main(_train_args(tiny_overrides, tmp_path / "mounted" / "run")) == 2
    messages = _messages(capsys.readouterr().err)
    assert len(messages) == 1 and "Read-only file system" in messages[0] and "mounted" in messages[0]


def test_an_output_place_that_is_a_file_is_one_line(tmp_path, tiny_overrides, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert main(_train_args(tiny_overrides, tmp_path / "file" / "run")) == 2
    messages = _messages(capsys.readouterr().err)
    assert len(messages) == 1 and "file" in messages[0]


def test_the_lock_file_is_left_in_a_finished_run_and_a_failed_start_leaves_no_folder(tmp_path, tiny_overrides):
    assert main(_train_args(tiny_overrides, tmp_path / "run", "train.steps=1")) == 0
    assert (tmp_path / "run" / LOCK).is_file()
    assert main(_train_args(tiny_overrides, tmp_path / "missing", "data.source=/no/such/folder")) == 2
    assert not (tmp_path / "missing").exists()


def test_evaluate_into_a_place_that_cannot_be_a_folder_fails_before_segmenting(tmp_path, capsys, monkeypatch):
    import objectness.evaluation.evaluate as evaluate_module

    for folder in ("images", "masks"):
        (tmp_path / "sod" / folder).mkdir(parents=True)
        Image.new("L", (8, 6)).save(tmp_path / "sod" / folder / "a.png")
    (tmp_path / "file").write_text("not a folder")

    def refuse(*args, **kwargs):
        raise AssertionError("segmented before the output place was checked")

    monkeypatch.setattr(evaluate_module, "segment_images", refuse)
    args = ["evaluate", "saliency", "--root", str(tmp_path / "sod"), "--checkpoint", "centre-prior",
            "--out", str(tmp_path / "file" / "eval")]
    assert main(args) == 2
    messages = _messages(capsys.readouterr().err)
    assert len(messages) == 1 and "a file stands where a folder is needed" in messages[0]


def test_an_image_given_as_a_checkpoint_is_named_as_such(tmp_path, capsys):
    Image.new("RGB", (8, 6)).save(tmp_path / "photo.png")
    args = ["segment", str(tmp_path / "photo.png"), "--checkpoint", str(tmp_path / "photo.png"),
            "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert "not a checkpoint" in _messages(capsys.readouterr().err)[0]
