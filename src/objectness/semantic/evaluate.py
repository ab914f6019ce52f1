"""Scoring a fine-tuned model on a labelled split: mIoU, per-class IoU and accuracies from one
confusion matrix over the set at each label's full resolution (metrics.py), beside the paper's VOC numbers.
"""
from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from tqdm import tqdm

from ..data.video import DataError
from ..device import resolve_device
from ..files import write_json, write_text
from .data import SemanticSet, eval_split, load_semantic_set
from .metrics import ConfusionMatrix
from .model import load_semantic_model
from .predict import predict_classes

log = logging.getLogger(__name__)


# docs/method.md#evaluation: VOC 2012 val mIoU of the paper, from AMD's weights and from scratch.
PAPER_VOC_MIOU = {"AMD": 0.620, "scratch": 0.480}


def evaluate_semantic(model, semantic_set: SemanticSet, short_edge, device, progress: bool = True) -> dict:
    """Scores of ``model`` on every image of ``semantic_set``: one confusion matrix, full label resolution."""
    device = next(model.parameters()).device if device is None else resolve_device(device)
    matrix = ConfusionMatrix(len(semantic_set.classes))
    for i in tqdm(range(len(semantic_set)), desc=f"{semantic_set.dataset} {semantic_set.split}", unit="image",
                  disable=not progress):
        image, label = semantic_set.read(i)
        matrix.add(predict_classes(model, image, short_edge, device), label)
    return matrix.summary(semantic_set.classes)


def evaluate_run(run, data_root=None, split=None, out_dir=None, device="auto", progress: bool = True) -> dict:
    """Score a fine-tuned run (or its weights) on ``split`` of its dataset; write the report to ``out_dir``
    (default: <run>/eval-<split>/). ``data_root`` replaces the data folder the run was trained on."""
    model, cfg, meta = load_semantic_model(run, device)
    if data_root is not None:
        cfg.data.root = str(data_root)
    split = split or eval_split(cfg)
    semantic_set = load_semantic_set(cfg.data, split)
    if semantic_set.classes != meta["classes"]:
        raise DataError(f"{cfg.data.root}: its classes differ from those the model was trained on")
    scores = evaluate_semantic(model, semantic_set, cfg.data.test_short_edge, None, progress)
    run_path = Path(run)
    out_dir = Path(out_dir) if out_dir else (run_path if run_path.is_dir() else run_path.parent) / f"eval-{split}"
    summary = {"model": str(run), "init": meta.get("init"), "init_sha256": meta.get("init_sha256"),
               "dataset": cfg.data.dataset, "root": cfg.data.root, "split": split, "images": len(semantic_set),
               "test_short_edge": cfg.data.test_short_edge, **scores,
               "paper": {"data": "PASCAL VOC 2012 val", "mIoU_from_AMD": PAPER_VOC_MIOU["AMD"],
                         "mIoU_from_scratch": PAPER_VOC_MIOU["scratch"]}}
    write_report(out_dir, summary)
    return {**summary, "out_dir": str(out_dir)}


def write_report(out_dir: Path, summary: dict) -> None:
    """per_class.csv, summary.json and summary.md (the paper's VOC numbers beside ours)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["class", "IoU", "accuracy", "pixels"])
    writer.writeheader()
    writer.writerows(summary["per_class"])
    write_text(out_dir / "per_class.csv", buffer.getvalue())
    write_json(out_dir / "summary.json", summary)
    write_text(out_dir / "summary.md", format_markdown(summary))


def format_markdown(summary: dict) -> str:
    init = summary.get("init") or "?"
    if summary.get("init_sha256"):
        init += f" (sha256 {summary['init_sha256']}...)"
    lines = [f"# {summary['dataset']} {summary['split']}: semantic segmentation", "",
             f"- model: {summary['model']}", f"- backbone initialised from: {init}",
             f"- images: {summary['images']}; network input shorter edge: {summary['test_short_edge'] or 'full size'}; "
             "scored at the labels' full resolution, void pixels left out", "",
             "| metric | ours |", "| --- | --- |"]
    lines += [f"| {key} | {_number(summary[key])} |" for key in ("mIoU", "pixel_accuracy", "mean_class_accuracy")]
    lines += ["", "| class | IoU | accuracy | labelled pixels |", "| --- | --- | --- | --- |"]
    lines += [f"| {row['class']} | {_number(row['IoU'])} | {_number(row['accuracy'])} | {row['pixels']} |"
              for row in summary["per_class"]]
    paper = summary["paper"]
    lines += ["", f"The paper ({paper['data']}): mIoU {paper['mIoU_from_AMD']:.3f} from AMD's weights, "
              f"{paper['mIoU_from_scratch']:.3f} from scratch."]
    if summary["dataset"] != "voc":
        lines.append(f"Those numbers are on another dataset than {summary['dataset']}; only the difference between "
                     "an AMD start and a scratch start compares.")
    return "\n".join(lines) + "\n"


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
