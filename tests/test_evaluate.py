"""objectness evaluate: predictions meet the right ground truth, and the scores are the metrics'."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

import objectness.evaluation.evaluate as evaluate_module
from objectness import cli
from objectness.evaluation.benchmarks import BenchmarkError
from objectness.evaluation.evaluate import EvaluationError, evaluate
from objectness.evaluation.metrics import jaccard
from objectness.inference.centre_prior import centre_prior
from objectness.inference.segmenter import load_segmenter
from objectness.model.amd import AMD
from objectness.model.checkpoint import metadata, save_weights


def _write_video_benchmark(root, sequences=2, frames=5, size=(24, 32)):
    """A DAVIS-layout set whose ground truth is readable from the frames: bright pixels are the object."""
    rng = np.random.default_rng(0)
    truth = {}
    for s in range(sequences):
        name = f"seq{s}"
        for t in range(frames):
            mask = np.zeros(size, bool)
            top, left = rng.integers(0, size[0] - 8), rng.integers(0, size[1] - 8)
            mask[top:top + 8, left:left + 10] = True
            frame = np.where(mask[..., None], 230, 20).astype(np.uint8).repeat(3, axis=2)
            for folder, image in (("JPEGImages", frame), ("Annotations", mask.astype(np.uint8) * 255)):
                path = root / folder / "240p" / name / f"{t:05d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(path)
            truth[(name, t)] = mask
    (root / "ImageSets" / "240p").mkdir(parents=True)
    (root / "ImageSets" / "240p" / "val.txt").write_text("".join(f"seq{s}\n" for s in range(sequences)))
    return truth


def _bright_segmenter(segmenter, images):
    """A stand-in for segment_images that sees the object perfectly: soft map = brightness."""
    return [np.asarray(image, np.float32).mean(-1) / 255 for image in images]


@pytest.fixture
def video_root(tmp_path):
    root = tmp_path / "davis"
    return root, _write_video_benchmark(root)


def test_perfect_predictions_score_one_on_every_sequence(video_root, tmp_path, monkeypatch):
    root, _ = video_root
    monkeypatch.setattr(evaluate_module, "segment_images", _bright_segmenter)
    summary = evaluate(None, "davis2016", root, tmp_path / "out", progress=False)
    assert summary["scores"]["J_mean"] == 1.0
    assert summary["scores"]["F_mean"] == 1.0
    assert summary["scores"]["sequences"] == 2 and summary["scores"]["frames"] == 10


def test_centre_prior_scores_equal_a_direct_computation(video_root, tmp_path):
    root, truth = video_root
    summary = evaluate(load_segmenter("centre-prior"), "davis2016", root, tmp_path / "out", progress=False)
    prior = centre_prior(24, 32) > 0.5
    per_sequence = [np.mean([jaccard(prior, truth[(f"seq{s}", t)]) for t in range(5)]) for s in range(2)]
    assert summary["scores"]["J_mean"] == pytest.approx(np.mean(per_sequence))
    rows = list(csv.DictReader(open(tmp_path / "out" / "per_sequence.csv")))
    assert [row["sequence"] for row in rows] == ["seq0", "seq1"]
    assert float(rows[1]["J_mean"]) == pytest.approx(per_sequence[1])


def test_outputs_hold_the_paper_number_beside_ours(video_root, tmp_path, monkeypatch):
    root, _ = video_root
    monkeypatch.setattr(evaluate_module, "segment_images", _bright_segmenter)
    evaluate(None, "davis2016", root, tmp_path / "out", progress=False)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["paper"] == [{"metric": "J_mean", "paper": 0.457, "ours": 1.0, "paper_data": "DAVIS 2016 val"}]
    assert "| J_mean | 1.000 | 0.457 |" in (tmp_path / "out" / "summary.md").read_text()
    assert len(list((tmp_path / "out" / "predictions" / "seq0").glob("*.png"))) == 5


def test_cached_predictions_are_reused_when_asked_and_give_the_same_scores(video_root, tmp_path, monkeypatch):
    root, _ = video_root
    first = evaluate(load_segmenter("centre-prior"), "davis2016", root, tmp_path / "out", progress=False)

    def refuse(*args, **kwargs):
        raise AssertionError("segmented again despite cached predictions")

    monkeypatch.setattr(evaluate_module, "segment_images", refuse)
    again = evaluate(load_segmenter("centre-prior"), "davis2016", root, tmp_path / "out", reuse=True, progress=False)
    assert again["scores"] == first["scores"]


def test_a_relative_threshold_finds_a_faint_object_and_rescores_cached_maps(video_root, tmp_path, monkeypatch):
    root, _ = video_root

    def faint(segmenter, images):  # the object at 0.4, the background at 0.08: below a fixed 0.5
        return [0.4 * np.asarray(image, np.float32).mean(-1) / 255 for image in images]

    monkeypatch.setattr(evaluate_module, "segment_images", faint)
    fixed = evaluate(None, "davis2016", root, tmp_path / "out", progress=False)
    assert fixed["scores"]["J_mean"] == 0.0 and fixed["relative_threshold"] is False
    monkeypatch.setattr(evaluate_module, "segment_images", None)  # the cached maps are scored again
    relative = evaluate(None, "davis2016", root, tmp_path / "out", reuse=True, relative_threshold=True,
                        progress=False)
    assert relative["scores"]["J_mean"] == 1.0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["relative_threshold"] is True
    assert "relative_threshold: yes" in (tmp_path / "out" / "summary.md").read_text()


def test_an_existing_evaluation_is_not_overwritten_unless_asked(video_root, tmp_path):
    root, _ = video_root
    prior = load_segmenter("centre-prior")
    evaluate(prior, "davis2016", root, tmp_path / "out", progress=False)
    with pytest.raises(FileExistsError, match="--overwrite"):
        evaluate(prior, "davis2016", root, tmp_path / "out", progress=False)
    evaluate(prior, "davis2016", root, tmp_path / "out", overwrite=True, progress=False)


def test_reusing_predictions_of_another_model_is_refused(video_root, tmp_path):
    root, _ = video_root
    prior = load_segmenter("centre-prior")
    evaluate(prior, "davis2016", root, tmp_path / "out", model_name="a", progress=False)
    with pytest.raises(EvaluationError, match="model"):
        evaluate(prior, "davis2016", root, tmp_path / "out", model_name="b", reuse=True, progress=False)


def test_saliency_scores_of_a_perfect_prediction(tmp_path, monkeypatch):
    for name in ("a", "b"):
        mask = np.zeros((20, 30), np.uint8)
        mask[5:15, 8:20] = 255
        for folder, image in (("images", np.stack([mask] * 3, -1)), ("masks", mask)):
            (tmp_path / "sod" / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(tmp_path / "sod" / folder / f"{name}.png")
    monkeypatch.setattr(evaluate_module, "segment_images", _bright_segmenter)
    summary = evaluate(None, "saliency", tmp_path / "sod", tmp_path / "out", progress=False)
    assert summary["scores"]["images"] == 2
    assert summary["scores"]["fbeta_max"] == pytest.approx(1.0)
    assert summary["scores"]["mae"] == pytest.approx(0.0)
    rows = list(csv.DictReader(open(tmp_path / "out" / "per_image.csv")))
    assert [row["name"] for row in rows] == ["a", "b"]


def test_saliency_sets_refuse_a_per_video_mode_and_a_relative_threshold(tmp_path):
    with pytest.raises(EvaluationError, match="per-video"):
        evaluate(None, "duts", tmp_path, tmp_path / "out", mode="per-video", progress=False)
    with pytest.raises(EvaluationError, match="every threshold"):  # a setting that would do nothing
        evaluate(None, "duts", tmp_path, tmp_path / "out", relative_threshold=True, progress=False)


def test_per_video_mode_adapts_a_real_model(video_root, tmp_path, tiny_config):
    root, _ = video_root
    torch.manual_seed(0)
    save_weights(tmp_path / "model.safetensors", AMD(tiny_config.model), tiny_config, metadata(objectness_channel=1))
    segmenter = load_segmenter(tmp_path / "model.safetensors", device="cpu")
    summary = evaluate(segmenter, "davis2016", root, tmp_path / "out", mode="per-video", adapt_steps=1, progress=False)
    assert summary["adapt_steps"] == 1
    assert 0 <= summary["scores"]["J_mean"] <= 1


def test_predictions_made_at_other_test_scales_are_not_reused(video_root, tmp_path, tiny_config):
    root, _ = video_root
    torch.manual_seed(0)
    save_weights(tmp_path / "model.safetensors", AMD(tiny_config.model), tiny_config, metadata(objectness_channel=1))
    one = load_segmenter(tmp_path / "model.safetensors", device="cpu")
    summary = evaluate(one, "davis2016", root, tmp_path / "out", progress=False)
    assert summary["test_scales"] == [1.0]
    two = load_segmenter(tmp_path / "model.safetensors", device="cpu", scales=[0.5, 1])
    with pytest.raises(EvaluationError, match="test_scales"):
        evaluate(two, "davis2016", root, tmp_path / "out", reuse=True, progress=False)


def test_predictions_made_with_another_guided_filter_are_not_reused(video_root, tmp_path, tiny_config):
    root, _ = video_root
    torch.manual_seed(0)
    save_weights(tmp_path / "model.safetensors", AMD(tiny_config.model), tiny_config, metadata(objectness_channel=1))
    plain = load_segmenter(tmp_path / "model.safetensors", device="cpu")
    assert evaluate(plain, "davis2016", root, tmp_path / "out", progress=False)["guided_filter"] is None
    refined = load_segmenter(tmp_path / "model.safetensors", device="cpu", guided_radius=0.2)
    with pytest.raises(EvaluationError, match="guided_filter"):
        evaluate(refined, "davis2016", root, tmp_path / "out", reuse=True, progress=False)
    summary = evaluate(refined, "davis2016", root, tmp_path / "out", overwrite=True, progress=False)
    assert summary["guided_filter"] == {"radius": 0.2, "eps": 0.001}
    assert "- guided_filter: radius 0.2 of the shorter edge, eps 0.001" in (tmp_path / "out" / "summary.md").read_text()
    sharper = load_segmenter(tmp_path / "model.safetensors", device="cpu", guided_radius=0.2, guided_eps=1e-4)
    assert sharper.guided_eps == 1e-4
    with pytest.raises(EvaluationError, match="guided_filter"):
        evaluate(sharper, "davis2016", root, tmp_path / "out", reuse=True, progress=False)


def test_cli_sets_the_guided_filters_eps_and_refuses_a_bad_one(video_root, tmp_path, tiny_config, capsys):
    root, _ = video_root
    save_weights(tmp_path / "model.safetensors", AMD(tiny_config.model), tiny_config, metadata(objectness_channel=1))
    common = ["evaluate", "davis2016", "--root", str(root), "--checkpoint", str(tmp_path / "model.safetensors"),
              "--guided-radius", "0.2"]
    assert cli.main([*common, "--guided-eps", "0.0001", "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["guided_filter"] == {"radius": 0.2, "eps": 0.0001}
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*common, "--guided-eps", "0", "--out", str(tmp_path / "bad")])
    assert exit_info.value.code == 2 and "must be positive" in capsys.readouterr().err


def test_cli_evaluates_the_centre_prior_and_prints_the_table(video_root, tmp_path, capsys):
    root, _ = video_root
    code = cli.main(["evaluate", "davis2016", "--root", str(root), "--checkpoint", "centre-prior",
                     "--out", str(tmp_path / "out")])
    assert code == 0
    assert "| J_mean |" in capsys.readouterr().out
    assert (tmp_path / "out" / "summary.md").is_file()


def test_cli_reports_a_missing_benchmark_in_one_line(tmp_path, capsys):
    code = cli.main(["evaluate", "davis2016", "--root", str(tmp_path / "nowhere"), "--checkpoint", "centre-prior",
                     "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("objectness: error:") and "nowhere" in err and "\n" not in err


def _write_saliency_set(root, mask_size=(20, 30)):
    for name in ("a", "b"):
        image = np.full((20, 30, 3), 40, np.uint8)
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "images" / f"{name}.png")
        Image.fromarray(np.zeros(mask_size if name == "b" else (20, 30), np.uint8)).save(root / "masks" / f"{name}.png")


@pytest.mark.parametrize("mask_size, words", [((20, 31), "31 x 20"), ((30, 20), "transposed")])
def test_a_mask_of_another_size_than_its_image_is_refused_before_segmenting(tmp_path, monkeypatch, mask_size,
                                                                            words):
    _write_saliency_set(tmp_path / "sod", mask_size)

    def refuse(*args, **kwargs):
        raise AssertionError("segmented before the masks were checked")

    monkeypatch.setattr(evaluate_module, "segment_images", refuse)
    with pytest.raises(BenchmarkError, match=f"b.png.*{words}"):
        evaluate(None, "saliency", tmp_path / "sod", tmp_path / "out", progress=False)


def test_an_annotation_of_another_size_than_its_frame_is_refused_before_segmenting(video_root, tmp_path,
                                                                                   monkeypatch):
    root, _ = video_root
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "Annotations" / "240p" / "seq1" / "00003.png")
    monkeypatch.setattr(evaluate_module, "segment_images", _bright_segmenter)
    with pytest.raises(BenchmarkError, match="seq1/00003.png: the mask is 10 x 10"):
        evaluate(None, "davis2016", root, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "predictions").exists()


@pytest.mark.parametrize("damage", ["truncate", "resize"])
def test_a_damaged_cached_prediction_is_made_again(video_root, tmp_path, monkeypatch, caplog, damage):
    root, _ = video_root
    first = evaluate(load_segmenter("centre-prior"), "davis2016", root, tmp_path / "out", progress=False)
    cached = tmp_path / "out" / "predictions" / "seq0" / "00002.png"
    if damage == "truncate":
        cached.write_bytes(cached.read_bytes()[:40])
    else:
        Image.open(cached).resize((8, 8)).save(cached)
    again = evaluate(load_segmenter("centre-prior"), "davis2016", root, tmp_path / "out", reuse=True, progress=False)
    assert again["scores"] == first["scores"] and "segmenting seq0 again" in caplog.text


def test_an_out_folder_that_holds_other_files_is_refused_unless_overwrite(video_root, tmp_path):
    root, _ = video_root
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        evaluate(load_segmenter("centre-prior"), "davis2016", root, tmp_path / "out", progress=False)
    evaluate(load_segmenter("centre-prior"), "davis2016", root, tmp_path / "out", overwrite=True, progress=False)
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"  # --overwrite replaces only what evaluate writes


def test_overwrite_keeps_the_earlier_evaluation_when_the_benchmark_is_refused(video_root, tmp_path):
    root, _ = video_root
    evaluate(load_segmenter("centre-prior"), "davis2016", root, tmp_path / "out", progress=False)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "Annotations" / "240p" / "seq1" / "00003.png")
    with pytest.raises(BenchmarkError):
        evaluate(load_segmenter("centre-prior"), "davis2016", root, tmp_path / "out", overwrite=True, progress=False)
    assert (tmp_path / "out" / "summary.json").is_file() and (tmp_path / "out" / "predictions").is_dir()
