"""Folds of the DAVIS 2016 training videos, for choosing recipes on videos they did not train on.

    python scripts/davis_folds.py make ../shared/data/davis2016 folds/       # the fold lists
    objectness train ... --data folds/ --set data.davis_split=fold0-train    # train on the other 20
    objectness evaluate davis2016 --root folds/ --split fold0 ...            # score the 10 held out
    python scripts/davis_folds.py table eval/fold0 eval/fold1 eval/fold2     # each fold, mean, spread

``make`` writes a DAVIS root whose frames and masks are links to the given
root and whose ImageSets hold, for k < --folds, ``fold{k}.txt`` (the held-out
videos: the k-th, (k + folds)-th, ... of train.txt) and ``fold{k}-train.txt``
(the others). ``table`` prints, for evaluations of one kind (one per fold),
each score, the mean and the spread (largest minus smallest) as Markdown.
"""
import argparse
import json
import sys
from pathlib import Path

from objectness.data.sources import davis_resolution, davis_split
from objectness.data.video import DataError

SCORES = {"video": ("J_mean", "F_mean", "JF_mean"), "saliency": ("fbeta_max", "fbeta_mean", "mae", "s_measure")}


def make_folds(root: Path, out: Path, folds: int = 3, resolution=None) -> dict:
    """Write the fold root ``out`` for DAVIS ``root``; returns {fold name: held-out videos}."""
    if folds < 2:
        raise DataError(f"--folds must be at least 2, got {folds}")
    resolution = resolution or davis_resolution(root / "JPEGImages")
    videos = davis_split(root / "ImageSets" / resolution / "train.txt")
    if len(videos) < folds:
        raise DataError(f"{len(videos)} training videos cannot make {folds} folds")
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} exists and is not empty")
    lists = out / "ImageSets" / resolution
    lists.mkdir(parents=True)
    for kind in ("JPEGImages", "Annotations"):
        (out / kind).mkdir()
        (out / kind / resolution).symlink_to((root / kind / resolution).resolve(), target_is_directory=True)
    (lists / "train.txt").write_text("".join(f"{name}\n" for name in videos))
    held = {}
    for k in range(folds):
        held[f"fold{k}"] = videos[k::folds]
        (lists / f"fold{k}.txt").write_text("".join(f"{name}\n" for name in videos[k::folds]))
        rest = [name for name in videos if name not in videos[k::folds]]
        (lists / f"fold{k}-train.txt").write_text("".join(f"{name}\n" for name in rest))
    return held


def fold_table(evaluations: list) -> str:
    """A Markdown table of the evaluations' scores (one column per evaluation), their mean and spread."""
    summaries = []
    for folder in evaluations:
        path = Path(folder) / "summary.json"
        if not path.is_file():
            raise DataError(f"{path} not found: is {folder} an `objectness evaluate` output?")
        summaries.append(json.loads(path.read_text()))
    keys = next((keys for keys in SCORES.values() if keys[0] in summaries[0]["scores"]), None)
    if keys is None or any(keys[0] not in s["scores"] for s in summaries):
        raise DataError("the evaluations are not all of one kind (video or saliency)")
    names = [Path(folder).name for folder in evaluations]
    lines = ["| score | " + " | ".join(names) + " | mean | spread |", "|---" * (len(names) + 3) + "|"]
    for key in keys:
        values = [s["scores"][key] for s in summaries]
        cells = " | ".join(f"{v:.3f}" for v in values)
        lines.append(f"| {key} | {cells} | {sum(values) / len(values):.3f} | {max(values) - min(values):.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make", help="write a DAVIS root with the fold lists (frames and masks linked)")
    make.add_argument("root", type=Path, help="a DAVIS root with ImageSets/<res>/train.txt")
    make.add_argument("out", type=Path, help="the fold root to write (a new or empty folder)")
    make.add_argument("--folds", type=int, default=3, help="number of folds (default: 3)")
    make.add_argument("--resolution", help="resolution folder (default: the only or largest one)")
    table = commands.add_parser("table", help="each fold's scores, their mean and spread, as Markdown")
    table.add_argument("evaluations", nargs="+", type=Path, help="`objectness evaluate` output folders")
    args = parser.parse_args(argv)
    try:
        if args.command == "make":
            for name, videos in make_folds(args.root, args.out, args.folds, args.resolution).items():
                print(f"{name}: {', '.join(videos)}")
        else:
            print(fold_table(args.evaluations))
    except DataError as err:
        print(f"davis_folds: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
