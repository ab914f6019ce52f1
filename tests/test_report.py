"""Figures, report.html and compare.html of evaluations, drawn from their folders alone."""
import base64
import csv
import hashlib
import io
import json
import warnings
from html.parser import HTMLParser

import numpy as np
import py_sod_metrics
import pytest
import torch
from PIL import Image

import objectness.evaluation.evaluate as evaluate_module
from objectness import cli
from objectness.evaluation.evaluate import EvaluationError, evaluate
from objectness.evaluation.metrics import jaccard
from objectness.evaluation.report import ReportError, write_comparison, write_report
from objectness.inference.centre_prior import centre_prior
from objectness.inference.segmenter import load_segmenter
from objectness.model.amd import AMD
from objectness.model.checkpoint import metadata, save_weights

SIZE = (24, 32)


def _write_video_benchmark(root, sequences=2, frames=4):
    """A DAVIS-layout set of bright boxes on a dark ground; returns {(sequence, frame stem): mask}."""
    rng = np.random.default_rng(0)
    truth = {}
    for s in range(sequences):
        for t in range(frames):
            mask = np.zeros(SIZE, bool)
            top, left = rng.integers(0, SIZE[0] - 8), rng.integers(0, SIZE[1] - 10)
            mask[top:top + 8, left:left + 10] = True
            frame = np.where(mask[..., None], 230, 20).astype(np.uint8).repeat(3, axis=2)
            for folder, image in (("JPEGImages", frame), ("Annotations", mask.astype(np.uint8) * 255)):
                path = root / folder / "240p" / f"seq{s}" / f"{t:05d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(path)
            truth[(f"seq{s}", f"{t:05d}")] = mask
    (root / "ImageSets" / "240p").mkdir(parents=True)
    (root / "ImageSets" / "240p" / "val.txt").write_text("".join(f"seq{s}\n" for s in range(sequences)))
    return truth


# Two 4 x 4 grey images whose grey level is the map a "bright" segmenter gives (k / 255: no quantisation),
# with the object in the left two columns.
HAND_MAPS = {
    "a": np.array([[255, 200, 0, 0], [255, 128, 64, 0], [200, 128, 64, 0], [128, 64, 255, 0]], np.uint8),
    "b": np.array([[90, 90, 10, 30], [60, 20, 90, 0], [90, 90, 0, 0], [30, 60, 0, 60]], np.uint8),
}
HAND_TRUTH = np.zeros((4, 4), bool)
HAND_TRUTH[:, :2] = True


def _write_saliency_set(root):
    for name, grey in HAND_MAPS.items():
        for folder, image in (("images", np.stack([grey] * 3, -1)), ("masks", HAND_TRUTH.astype(np.uint8) * 255)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / folder / f"{name}.png")


def _bright_segmenter(segmenter, images):
    """A stand-in for segment_images: the soft map is the image's grey level."""
    return [np.asarray(image, np.float32).mean(-1) / 255 for image in images]


@pytest.fixture
def video_root(tmp_path):
    root = tmp_path / "davis"
    return root, _write_video_benchmark(root)


@pytest.fixture
def saliency_root(tmp_path):
    _write_saliency_set(tmp_path / "sod")
    return tmp_path / "sod"


@pytest.fixture
def bright(monkeypatch):
    monkeypatch.setattr(evaluate_module, "segment_images", _bright_segmenter)


def _evaluate_prior(root, out, **options):
    return evaluate(load_segmenter("centre-prior"), "davis2016", root, out, model_name="centre-prior",
                    progress=False, **options)


class _Page(HTMLParser):
    """Every tag and every src and href of an HTML page."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.links = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [value for name, value in attrs if name in ("src", "href")]


def _check_self_contained(path):
    """The page loads nothing from elsewhere: no script, no stylesheet link, every image a data: PNG."""
    page = _Page(path.read_text())
    assert "script" not in page.tags and "link" not in page.tags
    assert page.links and all(link.startswith("data:image/png;base64,") for link in page.links)
    for link in page.links:
        Image.open(io.BytesIO(base64.b64decode(link.split(",", 1)[1]))).verify()
    return page


def test_a_video_evaluation_writes_its_report_and_figures(video_root, tmp_path):
    root, _ = video_root
    _evaluate_prior(root, tmp_path / "out")
    for name in ("sequences", "j_over_frames", "gallery_best", "gallery_worst"):
        with Image.open(tmp_path / "out" / "figures" / f"{name}.png") as figure:
            assert figure.format == "PNG" and min(figure.size) > 100
    page = _check_self_contained(tmp_path / "out" / "report.html")
    assert len(page.links) == 4


def test_per_frame_csv_holds_the_j_of_every_annotated_frame(video_root, tmp_path):
    root, truth = video_root
    summary = _evaluate_prior(root, tmp_path / "out")
    rows = list(csv.DictReader(open(tmp_path / "out" / "per_frame.csv")))
    prior = centre_prior(*SIZE) > 0.5
    assert [(row["sequence"], row["frame"]) for row in rows] == list(truth)
    for row in rows:
        assert float(row["J"]) == pytest.approx(jaccard(prior, truth[(row["sequence"], row["frame"])]))
    per_sequence = [np.mean([float(r["J"]) for r in rows if r["sequence"] == s]) for s in ("seq0", "seq1")]
    assert summary["scores"]["J_mean"] == pytest.approx(np.mean(per_sequence))


def test_the_video_report_states_the_settings_scores_and_the_paper(video_root, tmp_path):
    root, _ = video_root
    summary = _evaluate_prior(root, tmp_path / "out", threshold=0.3)
    text = (tmp_path / "out" / "report.html").read_text()
    assert "<h1>davis2016, per-image</h1>" in text
    assert "<td>binarisation threshold</td><td>0.3</td>" in text and "<td>model</td><td>centre-prior</td>" in text
    for metric in ("J_mean", "F_mean", "JF_mean"):
        assert f'<td>{metric}</td><td class="number">{summary["scores"][metric]:.3f}</td>' in text
    assert '<td class="number">0.457</td><td>DAVIS 2016 val</td>' in text  # the paper's per-image J


def test_a_saliency_evaluation_writes_its_curves_report_and_figures(saliency_root, bright, tmp_path):
    summary = evaluate(None, "saliency", saliency_root, tmp_path / "out", progress=False)
    for name in ("pr_curve", "fbeta_threshold", "gallery_best", "gallery_worst"):
        assert (tmp_path / "out" / "figures" / f"{name}.png").is_file()
    _check_self_contained(tmp_path / "out" / "report.html")
    text = (tmp_path / "out" / "report.html").read_text()
    for metric in ("mae", "s_measure", "e_measure_max", "fbeta_max"):
        assert f'<td>{metric}</td><td class="number">{summary["scores"][metric]:.3f}</td>' in text


def test_the_curves_in_the_folder_are_py_sod_metrics_own(saliency_root, bright, tmp_path):
    summary = evaluate(None, "saliency", saliency_root, tmp_path / "out", progress=False)
    curves = json.loads((tmp_path / "out" / "curves.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the older Fmeasure class is deprecated; its arithmetic is not
        reference = py_sod_metrics.Fmeasure(beta=0.3)
    for grey in HAND_MAPS.values():
        reference.step(pred=grey, gt=HAND_TRUTH.astype(np.uint8) * 255)
    expected = reference.get_results()
    assert curves["threshold"] == list(range(255, -1, -1))
    np.testing.assert_allclose(curves["precision"], expected["pr"]["p"], rtol=1e-12)
    np.testing.assert_allclose(curves["recall"], expected["pr"]["r"], rtol=1e-12)
    np.testing.assert_allclose(curves["fbeta"], expected["fm"]["curve"], rtol=1e-12)
    # At threshold 0 every pixel is foreground: recall 1, precision the object's share (8 of 16 pixels).
    assert (curves["recall"][-1], curves["precision"][-1]) == (pytest.approx(1.0), pytest.approx(0.5))
    assert max(curves["fbeta"]) == pytest.approx(summary["scores"]["fbeta_max"])


def test_compare_refuses_a_folder_of_another_benchmark_before_segmenting(saliency_root, video_root, tmp_path,
                                                                         monkeypatch, capsys):
    evaluate(load_segmenter("centre-prior"), "saliency", saliency_root, tmp_path / "sod-eval", progress=False)
    root, _ = video_root

    def refuse(*args, **kwargs):
        raise AssertionError("segmented before the folders to compare were checked")

    monkeypatch.setattr(evaluate_module, "segment_images", refuse)
    with pytest.raises(ReportError, match="sod-eval is an evaluation of saliency"):
        _evaluate_prior(root, tmp_path / "out", compare=[tmp_path / "sod-eval"])
    code = cli.main(["evaluate", "davis2016", "--root", str(root), "--checkpoint", "centre-prior",
                     "--out", str(tmp_path / "out"), "--compare", str(tmp_path / "sod-eval")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not of davis2016" in err
    assert not (tmp_path / "out").exists()


def test_compare_refuses_a_folder_without_an_evaluation(video_root, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="holds no evaluation"):
        _evaluate_prior(video_root[0], tmp_path / "out", compare=[tmp_path / "empty"])


def test_compare_refuses_the_output_folder_itself(video_root, tmp_path):
    _evaluate_prior(video_root[0], tmp_path / "out")
    with pytest.raises(EvaluationError, match="output folder"):
        _evaluate_prior(video_root[0], tmp_path / "out", overwrite=True, compare=[tmp_path / "out"])


def test_evaluate_with_compare_puts_both_evaluations_in_one_table(video_root, tmp_path):
    root, _ = video_root
    half = _evaluate_prior(root, tmp_path / "prior-half")
    low = _evaluate_prior(root, tmp_path / "prior-low", threshold=0.2, compare=[tmp_path / "prior-half"])
    text = (tmp_path / "prior-low" / "compare.html").read_text()
    _check_self_contained(tmp_path / "prior-low" / "compare.html")
    assert (tmp_path / "prior-low" / "figures" / "compare_sequences.png").is_file()
    for name, summary in (("prior-half", half), ("prior-low", low)):
        assert f"<td>{name}</td>" in text and f'{summary["scores"]["J_mean"]:.3f}' in text
    assert "<th>binarisation threshold</th>" in text  # the setting in which they differ


def test_report_of_two_folders_writes_compare_html_with_both_names(saliency_root, tmp_path, capsys, monkeypatch):
    prior = evaluate(load_segmenter("centre-prior"), "saliency", saliency_root, tmp_path / "prior", progress=False)
    monkeypatch.setattr(evaluate_module, "segment_images", _bright_segmenter)
    bright = evaluate(None, "saliency", saliency_root, tmp_path / "bright", progress=False)
    code = cli.main(["report", str(tmp_path / "bright"), str(tmp_path / "prior"), "--out", str(tmp_path / "both")])
    assert code == 0 and "compare.html" in capsys.readouterr().out
    text = (tmp_path / "both" / "compare.html").read_text()
    for name, summary in (("bright", bright), ("prior", prior)):
        assert f"<td>{name}</td>" in text and f'{summary["scores"]["fbeta_max"]:.3f}' in text
    _check_self_contained(tmp_path / "both" / "compare.html")
    assert (tmp_path / "both" / "figures" / "compare_pr_curve.png").is_file()


def test_report_refuses_to_replace_a_report_unless_overwrite(video_root, tmp_path, capsys):
    _evaluate_prior(video_root[0], tmp_path / "eval")
    argv = ["report", str(tmp_path / "eval"), "--out", str(tmp_path / "eval")]
    assert cli.main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(argv + ["--overwrite"]) == 0


def test_report_of_a_folder_of_another_benchmark_is_one_error_line(saliency_root, video_root, tmp_path, capsys):
    evaluate(load_segmenter("centre-prior"), "saliency", saliency_root, tmp_path / "sod-eval", progress=False)
    _evaluate_prior(video_root[0], tmp_path / "davis-eval")
    code = cli.main(["report", str(tmp_path / "davis-eval"), str(tmp_path / "sod-eval"), "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "sod-eval is an evaluation of saliency" in err
    assert not (tmp_path / "c" / "compare.html").exists()


def test_an_older_evaluation_is_reported_with_what_it_lacks_named(video_root, saliency_root, tmp_path):
    _evaluate_prior(video_root[0], tmp_path / "davis-eval")
    evaluate(load_segmenter("centre-prior"), "saliency", saliency_root, tmp_path / "sod-eval", progress=False)
    (tmp_path / "davis-eval" / "per_frame.csv").unlink()
    (tmp_path / "sod-eval" / "curves.json").unlink()
    video = write_report(tmp_path / "davis-eval", tmp_path / "again-davis").read_text()
    assert "per_frame.csv is missing" in video and "J_mean" in video and "gallery_best" not in video
    assert not (tmp_path / "again-davis" / "figures" / "gallery_best.png").exists()
    saliency = write_report(tmp_path / "sod-eval", tmp_path / "again-sod").read_text()
    assert "curves.json is missing" in saliency and "<td>mae</td>" in saliency
    compared = write_comparison([tmp_path / "sod-eval", tmp_path / "sod-eval"], tmp_path / "c").read_text()
    assert "no curves.json" in compared


def test_a_benchmark_that_has_moved_leaves_the_gallery_out_with_a_note(video_root, tmp_path):
    root, _ = video_root
    _evaluate_prior(root, tmp_path / "eval")
    root.rename(tmp_path / "moved")
    text = write_report(tmp_path / "eval", tmp_path / "again").read_text()
    assert "no gallery" in text and "davis" in text
    assert (tmp_path / "again" / "figures" / "j_over_frames.png").is_file()


def test_the_sha256_of_the_weights_is_in_the_settings_and_guards_reuse(video_root, tmp_path, tiny_config):
    root, _ = video_root
    torch.manual_seed(0)
    weights = tmp_path / "model.safetensors"
    save_weights(weights, AMD(tiny_config.model), tiny_config, metadata(objectness_channel=1))
    segmenter = load_segmenter(weights, device="cpu")
    summary = evaluate(segmenter, "davis2016", root, tmp_path / "out", model_name=str(weights), progress=False)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert summary["model_sha256"] == digest
    assert f"<td>weights sha256</td><td>{digest}</td>" in (tmp_path / "out" / "report.html").read_text()
    save_weights(weights, AMD(tiny_config.model), tiny_config, metadata(objectness_channel=1))  # new weights
    with pytest.raises(EvaluationError, match="model_sha256"):
        evaluate(segmenter, "davis2016", root, tmp_path / "out", model_name=str(weights), reuse=True, progress=False)
