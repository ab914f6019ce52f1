"""The ``objectness`` command: a thin layer over the Python API.

Each subcommand is a pair ``add_<name>_parser(subparsers)`` and
``run_<name>(args) -> int``; ``add_<name>_parser`` registers ``run_<name>``
as the parser's ``run`` default. Errors in the user's input (config, data,
checkpoint, run folder) print one line on stderr and exit with code 2.
"""
import argparse
import logging
import sys
from pathlib import Path

from . import __version__


def add_train_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train AMD from scratch on unlabeled video",
        description=(
            "Train AMD from scratch by view synthesis on unlabeled video: the appearance "
            "network segments each frame, the motion network moves the segments, and "
            "rebuilding one frame from the other is the only training signal. Writes "
            "config.yaml, metrics.jsonl, panels/, last.pt and model.safetensors to --out. "
            "For several GPUs launch it with torchrun (train.batch_size is per process)."
        ),
        epilog="example: objectness train --config paper --data /data/youtube-vos/train --out runs/amd",
    )
    parser.add_argument("--config", metavar="PRESET_OR_YAML",
                        help="a preset name (paper) or a YAML file; default: the paper's values, "
                             "or the run's config.yaml with --resume")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, value parsed as YAML (repeatable), "
                             "e.g. --set model.appearance.depth=18 --set train.batch_size=4")
    parser.add_argument("--data", metavar="SOURCE",
                        help="data.source: a DAVIS root, a folder of frame folders, a folder of "
                             "video files, one video file, or 'synthetic'")
    parser.add_argument("--out", required=True, type=Path, metavar="RUN_DIR", help="the run folder")
    parser.add_argument("--steps", type=int, metavar="N", help="train.steps: number of optimizer steps")
    parser.add_argument("--device", metavar="D", help="train.device: auto, cpu, cuda, cuda:1, ...")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue the run in --out from its last.pt, exactly as if never stopped")
    existing.add_argument("--overwrite", action="store_true", help="delete the run in --out and start again")
    parser.set_defaults(run=run_train)


def run_train(args) -> int:
    from .config import load_config
    from .train import train

    preset = args.config
    if preset is None and args.resume and (args.out / "config.yaml").is_file():
        preset = str(args.out / "config.yaml")
    flags = {"data.source": args.data, "train.steps": args.steps, "train.device": args.device}
    overrides = args.overrides + [f"{key}={value}" for key, value in flags.items() if value is not None]
    cfg = load_config(preset, overrides)
    summary = train(cfg, args.out, resume=args.resume, overwrite=args.overwrite)
    print(f"trained to step {summary['step']}: loss {summary['loss']}, "
          f"{summary['bad_frames']} bad frames skipped; weights in {summary['weights']}")
    return 0


def add_demo_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="watch objectness emerge: train on synthetic video and segment held-out clips",
        description=(
            "Generate synthetic videos, train the cpu-small model on them from scratch with no "
            "labels (a few minutes on a 2-core CPU), choose the objectness channel from label-free "
            "statistics, then segment held-out synthetic videos. Prints their mean IoU beside a "
            "centre-prior baseline and writes overlays/, channels/, summary.json and the run to --out."
        ),
        epilog="example: objectness demo --out demo-out",
    )
    parser.add_argument("--out", type=Path, default=Path("objectness-demo"), metavar="DIR",
                        help="output folder (default: objectness-demo)")
    parser.add_argument("--minutes", type=float, default=DEMO_MINUTES, metavar="M",
                        help=f"training time budget in minutes (default: {DEMO_MINUTES:g})")
    parser.add_argument("--steps", type=int, metavar="N", help="train for at most N steps (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the model (default: 0)")
    parser.add_argument("--device", default="auto", metavar="D", help="auto, cpu, cuda, ... (default: auto)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any key of the cpu-small preset (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="replace the run or summary in --out if there is one")
    parser.add_argument("--checkpoint", type=Path, metavar="CKPT",
                        help="skip training: evaluate this checkpoint or run folder (trained on synthetic video)")
    parser.set_defaults(run=run_demo)


DEMO_MINUTES = 6.5  # leaves time for data, channel choice and segmentation within 8 minutes


def run_demo(args) -> int:
    from .demo import demo_config, evaluate_checkpoint, format_summary, run_demo as demo

    if args.checkpoint is not None:
        summary = evaluate_checkpoint(args.checkpoint, args.out, overwrite=args.overwrite)
    else:
        cfg = demo_config(args.minutes, args.steps, args.seed, args.device, args.overrides)
        summary = demo(cfg, args.out, overwrite=args.overwrite)
    print(format_summary(summary))
    print(f"overlays, channel strips and summary.json in {args.out}")
    return 0


def add_segment_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment the objects in images and videos with a trained model (zero-shot)",
        description=(
            "Segment objects in images, videos and folders of frames with no labels: the objectness "
            "channel of the appearance network is the object map. A folder of images is one video "
            "(frames in name order) unless --images is given. --adapt first trains a copy of the model "
            "for N steps on each video's own frame pairs (test-time adaptation; the weights on disk "
            "are not changed). Writes <stem>_soft.png, <stem>_mask.png and <stem>_overlay.jpg per image "
            "or frame to --out/<input name>/, and overlay.mp4 and channels.png per video."
        ),
        epilog="example: objectness segment clip.mp4 photo.jpg frames/ --checkpoint runs/amd --out seg --adapt",
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                        help="image files, video files (mp4, avi, mov, webm, mkv) and folders")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--checkpoint", metavar="CKPT",
                        help="a run folder, last.pt or model.safetensors; 'centre-prior' for the baseline")
    parser.add_argument("--channel", type=int, metavar="K",
                        help="the objectness channel (default: the one stored with the checkpoint)")
    parser.add_argument("--threshold", type=_unit_interval, default=0.5, metavar="T",
                        help="the mask is the soft map above T (default: 0.5)")
    parser.add_argument("--adapt", type=_non_negative_int, nargs="?", const=100, default=0, metavar="N",
                        help="adapt to each video for N steps first (N = 100 if omitted; default: no adaptation); "
                             "put it after the inputs")
    parser.add_argument("--images", action="store_true", help="a folder holds independent images, not a video")
    parser.add_argument("--device", default="auto", metavar="D", help="auto, cpu, cuda, cuda:1, ... (default: auto)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output folders of the inputs")
    parser.set_defaults(run=run_segment)


def _unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in 0..1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def run_segment(args) -> int:
    from .segment import default_checkpoint, load_segmenter, segment_inputs

    checkpoint = args.checkpoint if args.checkpoint is not None else default_checkpoint()
    segmenter = load_segmenter(checkpoint, args.channel, args.device)
    summary = segment_inputs(segmenter, args.inputs, args.out, threshold=args.threshold, adapt_steps=args.adapt,
                             images=args.images, overwrite=args.overwrite)
    print(f"segmented {len(summary['outputs'])} input(s): results in {args.out}")
    if summary["skipped"]:
        print(f"skipped {summary['skipped']} unreadable or unusable file(s); see the warnings above")
    return 0


SUBCOMMANDS = (add_train_parser, add_demo_parser, add_segment_parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="objectness",
        description="AMD: zero-shot object segmentation learned from unlabeled video (NeurIPS 2021).",
    )
    parser.add_argument("--version", action="version", version=f"objectness {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parser in SUBCOMMANDS:
        add_parser(subparsers)
    return parser


def subcommands() -> dict:
    """Name -> parser of every subcommand."""
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _user_errors() -> tuple:
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .data import DataError

    return ConfigError, DataError, CheckpointError, FileExistsError


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("objectness: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if not isinstance(err, _user_errors()):
            raise
        message = " ".join(str(err).split())
        print(f"objectness: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
