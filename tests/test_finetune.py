"""objectness finetune: f_A's backbone with the FCN head and a fresh classifier, trained on labelled images."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from semantic_fixtures import make_folders, save_index_png

from objectness.cli import main
from objectness.config import FinetuneConfig, load_config
from objectness.model.amd import AMD
from objectness.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    metadata,
    save_checkpoint,
    save_weights,
)
from objectness.semantic import finetune as finetune_module
from objectness.semantic.evaluate import evaluate_run
from objectness.semantic.finetune import (
    backbone_weights,
    finetune,
    make_optimizer,
    optimisation_step,
)
from objectness.semantic.model import build_model, class_logits, load_semantic_model
from objectness.training.logger import read_metrics
from objectness.training.run import write_training_state

TINY = [
    "model.appearance.depth=18",
    "model.appearance.width=8",
    "model.appearance.head_channels=16",
    "data.dataset=folders",
    "data.short_edge=32",
    "data.scale_range=[1.0,1.0]",
    "data.crop_size=[32,32]",
    "data.test_short_edge=null",
    "data.workers=0",
    "train.batch_size=2",
    "train.steps=4",
    "train.log_every=1",
    "train.checkpoint_every=2",
    "train.panel_every=2",
    "train.device=cpu",
]


@pytest.fixture
def tiny(tmp_path):
    """A FinetuneConfig of a ResNet-18 of width 8 on a 4-image folders set of 3 classes."""
    root = make_folders(tmp_path / "data")
    return load_config(None, TINY + [f"data.root={root}"], cls=FinetuneConfig)


@pytest.fixture
def amd_weights(tmp_path, tiny_config):
    """A model.safetensors of AMD with the tiny backbone (ResNet-18, width 8)."""
    torch.manual_seed(1)
    path = tmp_path / "amd" / "model.safetensors"
    save_weights(path, AMD(tiny_config.model), tiny_config, metadata(objectness_channel=0))
    return path


def test_the_head_gives_one_logit_per_class_at_the_input_size():
    model = build_model(FinetuneConfig().model, num_classes=21).eval()  # the paper's: ResNet-50, 256-channel head
    assert model.head.convs[0].out_channels == 256 and model.head.convs[0].dilation == (6, 6)
    images = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        assert model.logits(images).shape == (2, 21, 8, 10)
        assert class_logits(model, images).shape == (2, 21, 64, 80)


def test_a_few_steps_lower_the_loss(tiny):
    torch.manual_seed(0)
    model = build_model(tiny.model, num_classes=3)
    tiny.train.lr = 0.05
    optimizer, _ = make_optimizer(model, tiny.train)
    labels = torch.randint(3, (4, 1, 4)).repeat_interleave(8, dim=2).expand(4, 32, 32).contiguous()  # 8-pixel bands
    colours = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.2, 0.9]])
    images = colours[labels].permute(0, 3, 1, 2)  # (4, 3, 32, 32), colour tells the class
    losses = [optimisation_step(model, optimizer, images, labels, "fp32")[0].item() for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0]


def test_init_takes_only_the_backbone_from_amd_weights(tiny, amd_weights, tmp_path):
    tiny.train.init = str(amd_weights)
    tiny.train.steps = 1
    tiny.train.lr = 1e-12  # the step barely moves the weights
    weights = backbone_weights(amd_weights, tiny.model.appearance)
    assert weights and all(not k.startswith(("head", "appearance")) for k in weights)
    finetune(tiny, tmp_path / "run", progress=False)
    model, _, meta = load_semantic_model(tmp_path / "run")
    source = load_file(str(amd_weights))
    for name, tensor in model.backbone.state_dict().items():
        if name.endswith("weight") and tensor.dim() == 4:
            torch.testing.assert_close(tensor, source[f"appearance.backbone.{name}"], rtol=0, atol=1e-6)
    assert not torch.allclose(model.head.convs[0].weight, source["appearance.head.convs.0.weight"])
    assert meta["init_file"] == "model.safetensors" and len(meta["init_sha256"]) == 12


def test_init_also_takes_the_backbone_of_a_fine_tuned_run(tiny, tmp_path):
    finetune(tiny, tmp_path / "first", progress=False)
    first, _, _ = load_semantic_model(tmp_path / "first")
    weights = backbone_weights(tmp_path / "first", tiny.model.appearance)
    for name, tensor in first.backbone.state_dict().items():
        torch.testing.assert_close(weights[name], tensor, rtol=0, atol=0)


def test_init_refuses_weights_of_another_architecture(tiny, amd_weights, capsys, tmp_path):
    tiny.model.appearance.width = 16
    with pytest.raises(CheckpointError, match="another architecture .*width 8 \\(here 16\\)"):
        backbone_weights(amd_weights, tiny.model.appearance)
    code = main(["finetune", "--init", str(amd_weights), "--data", tiny.data.root, "--dataset", "folders",
                 "--out", str(tmp_path / "run"), *sum((["--set", s] for s in TINY if "width" not in s), [])])
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the label check's progress bar
    assert code == 2 and last.startswith("objectness: error:") and "another architecture" in last
    assert not (tmp_path / "run").exists()


def test_a_run_folder_holds_config_metrics_panels_checkpoint_weights_and_scores(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["finetune", "--init", "scratch", "--data", tiny.data.root, "--dataset", "folders", "--out", str(out),
            *sum((["--set", s] for s in TINY), [])]
    assert main(args) == 0
    assert {p.name for p in out.iterdir()} >= {"config.yaml", "metrics.jsonl", "panels", "last.pt",
                                                "model.safetensors", "eval-val"}
    assert [r["step"] for r in read_metrics(out)] == [1, 2, 3, 4]
    assert Image.open(out / "panels" / "step-0000004.png").size == (3 * 32, 32)
    summary = json.loads((out / "eval-val" / "summary.json").read_text())
    assert summary["init"] == "scratch" and summary["images"] == 2
    assert [row["class"] for row in summary["per_class"]] == ["road", "car", "sky"]
    assert "0.620 from AMD's weights" in (out / "eval-val" / "summary.md").read_text()
    assert main(args) == 2 and "--resume" in capsys.readouterr().err  # a run is never clobbered


def test_resuming_reproduces_the_uninterrupted_run(tiny, tmp_path, monkeypatch):
    finetune(tiny, tmp_path / "straight", progress=False)

    def write_then_crash(path, *args, **kwargs):
        write_training_state(path, *args, **kwargs)
        raise KeyboardInterrupt  # killed right after the checkpoint of step 2

    monkeypatch.setattr(finetune_module, "write_training_state", write_then_crash)
    with pytest.raises(KeyboardInterrupt):
        finetune(tiny, tmp_path / "resumed", progress=False)
    monkeypatch.undo()
    summary = finetune(tiny, tmp_path / "resumed", resume=True, progress=False)
    assert summary["start_step"] == 2
    assert [r["step"] for r in read_metrics(tmp_path / "resumed")] == [1, 2, 3, 4]
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")["model"]
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=0, atol=0)


def test_a_new_run_must_name_its_init(tiny, tmp_path, capsys):
    code = main(["finetune", "--data", tiny.data.root, "--dataset", "folders", "--out", str(tmp_path / "run")])
    assert code == 2 and "--init scratch" in capsys.readouterr().err


def test_a_bad_label_stops_the_run_before_it_starts_in_one_line_naming_the_file(tiny, tmp_path, capsys):
    save_index_png(tmp_path / "data" / "labels" / "im02.png", np.full((40, 48), 9, np.uint8))
    code = main(["finetune", "--init", "scratch", "--data", tiny.data.root, "--dataset", "folders",
                 "--out", str(tmp_path / "run"), *sum((["--set", s] for s in TINY), [])])
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the label check's progress bar
    assert code == 2 and last.startswith("objectness: error:") and "im02.png: label value(s) 9" in last
    assert not (tmp_path / "run").exists()


def test_amd_weights_are_not_a_semantic_model(amd_weights):
    with pytest.raises(CheckpointError, match="not a fine-tuned semantic-segmentation model"):
        load_semantic_model(amd_weights)


def test_evaluation_and_prediction_of_a_run(tiny, tmp_path):
    finetune(tiny, tmp_path / "run", progress=False)
    summary = evaluate_run(tmp_path / "run", split="all", device="cpu", progress=False)
    assert summary["split"] == "all" and summary["images"] == 4
    assert 0 <= summary["mIoU"] <= 1 and summary["labelled_pixels"] == 4 * 38 * 48
    assert main(["semantic", str(tmp_path / "data" / "images"), "--checkpoint", str(tmp_path / "run"),
                 "--out", str(tmp_path / "labels")]) == 0
    class_map = Image.open(tmp_path / "labels" / "im00_classes.png")
    assert class_map.mode == "P" and class_map.size == (48, 40) and np.asarray(class_map).max() < 3
    assert (tmp_path / "labels" / "im00_overlay.jpg").is_file() and (tmp_path / "labels" / "legend.png").is_file()


def test_semantic_keeps_images_of_one_name_apart_and_refuses_a_full_out(tiny, tmp_path, capsys):
    tiny.train.steps = 1
    finetune(tiny, tmp_path / "run", progress=False)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (48, 40), (10, 200, 30) if folder == "a" else (200, 10, 30)).save(tmp_path / folder / "x.png")
    args = ["semantic", str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png"),
            "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "labels")]
    assert main(args) == 0
    overlays = [np.asarray(Image.open(tmp_path / "labels" / name)) for name in ("x_overlay.jpg", "x-2_overlay.jpg")]
    assert np.abs(overlays[0].astype(int) - overlays[1]).mean() > 20  # two images, two results
    capsys.readouterr()
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0


def test_a_run_of_the_format_before_the_shared_skeleton_resumes(tiny, tmp_path):
    """Fine-tuning checkpoints once held one process's generators as a dict, not a list per process."""
    tiny.train.steps = 2
    finetune(tiny, tmp_path / "run", progress=False)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    state["rng"] = state["rng"][0]
    save_checkpoint(tmp_path / "run" / "last.pt", state)
    tiny.train.steps = 3
    summary = finetune(tiny, tmp_path / "run", resume=True, progress=False)
    assert (summary["start_step"], summary["step"]) == (2, 3)
