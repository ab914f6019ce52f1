"""The ``objectness`` command: a thin layer over the Python API.

Each subcommand is a pair ``add_<name>_parser(subparsers)`` and
``run_<name>(args) -> int``; ``add_<name>_parser`` registers ``run_<name>``
as the parser's ``run`` default. Errors in the user's input (config, data,
checkpoint, run folder) print one line on stderr and exit with code 2.
"""
import argparse
import dataclasses
import errno
import logging
import sys
from pathlib import Path

from ._version import __version__


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
    parser.add_argument("--images", metavar="DIR",
                        help="data.images: a folder of unlabeled still images (searched recursively) whose "
                             "cached target maps f_A also learns where loss.image_weight > 0 (not the paper's)")
    parser.add_argument("--out", required=True, type=Path, metavar="RUN_DIR", help="the run folder")
    parser.add_argument("--steps", type=int, metavar="N", help="train.steps: number of optimizer steps")
    parser.add_argument("--device", metavar="D", help="train.device: auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--init", metavar="CKPT",
                        help="train.init: start from these weights (a run folder, last.pt or "
                             ".safetensors of the same model config), e.g. to fine-tune on your "
                             "own videos; the optimizer and lr schedule start afresh")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue the run in --out from its last.pt, exactly as if never stopped")
    existing.add_argument("--overwrite", action="store_true", help="delete the run in --out and start again")
    parser.set_defaults(run=run_train)


def run_train(args) -> int:
    from .config import ConfigError, load_config
    from .training.train import train

    if args.resume and args.init:
        raise ConfigError("--init starts a new run from other weights and --resume continues this one: pass one")
    preset = args.config
    if preset is None and args.resume and (args.out / "config.yaml").is_file():
        preset = str(args.out / "config.yaml")
    flags = {"data.source": args.data, "data.images": args.images, "train.steps": args.steps,
             "train.device": args.device, "train.init": args.init}
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
            "Generate synthetic videos, train the cpu-small model (the demo preset, configs/demo.yaml) on them from scratch with no "
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
                        help="override any key of the demo preset (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="replace the run or summary in --out if there is one")
    parser.add_argument("--checkpoint", type=Path, metavar="CKPT",
                        help="skip training: evaluate this checkpoint or run folder (trained on synthetic video)")
    parser.set_defaults(run=run_demo)


DEMO_MINUTES = 6.5  # leaves time for data, channel choice and segmentation within 8 minutes


def run_demo(args) -> int:
    from .tools.demo import demo_config, evaluate_checkpoint, format_summary
    from .tools.demo import run_demo as demo

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
                        help="a run folder, last.pt or model.safetensors; 'centre-prior', 'saliency-prior' or "
                             "'rbd-contrast-prior' for a baseline with no learning")
    parser.add_argument("--channel", type=int, metavar="K",
                        help="the objectness channel (default: the one stored with the checkpoint)")
    parser.add_argument("--threshold", type=_unit_interval, default=0.5, metavar="T",
                        help="the mask is the soft map above T (default: 0.5)")
    parser.add_argument("--relative-threshold", action="store_true",
                        help="the mask is the map above T times the map's own maximum: the same mask where the map "
                             "reaches 1, a mask where a faint map stays below T (not the paper's; default: off)")
    parser.add_argument("--adapt", type=_non_negative_int, nargs="?", const=100, default=0, metavar="N",
                        help="adapt to each video for N steps first (N = 100 if omitted; default: no adaptation); "
                             "put it after the inputs")
    parser.add_argument("--images", action="store_true", help="a folder holds independent images, not a video")
    _add_test_time_arguments(parser)
    parser.add_argument("--device", default="auto", metavar="D", help="auto, cpu, cuda, cuda:1, ... (default: auto)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output folders of the inputs")
    parser.set_defaults(run=run_segment)


def _add_test_time_arguments(parser) -> None:
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"),
                        help="run the appearance network (and adaptation) under bf16 autocast or in fp32; auto: "
                             "bf16 where the device computes it natively (a CUDA GPU, a CPU with AVX512-BF16 or AMX), "
                             "else fp32 (default: the checkpoint's train.precision; auto for the shipped model)")
    parser.add_argument("--scales", type=_positive_float, nargs="+", metavar="S",
                        help="average the objectness maps at these multiples of the test shorter edge, e.g. "
                             "--scales 1 for one scale (default: the checkpoint's data.test_scales)")
    parser.add_argument("--guided-radius", type=_unit_interval, metavar="R",
                        help="refine each objectness map by the guided filter with the image as guide, in windows "
                             "of radius R times the shorter edge; 0 turns it off (default: the checkpoint's "
                             "data.test_guided_radius)")
    parser.add_argument("--guided-eps", type=_positive_float, metavar="E",
                        help="the guided filter's regularisation, in squared colour units (colours in 0..1): the "
                             "smaller, the more closely the map's edges follow the image's (default: the checkpoint's "
                             "data.test_guided_eps)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


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
    from .inference.segmenter import load_segmenter
    from .tools.segment_files import segment_inputs

    segmenter = load_segmenter(args.checkpoint, args.channel, args.device, args.scales, args.guided_radius,
                               args.precision, args.guided_eps)
    summary = segment_inputs(segmenter, args.inputs, args.out, threshold=args.threshold, adapt_steps=args.adapt,
                             images=args.images, overwrite=args.overwrite, relative_threshold=args.relative_threshold)
    print(f"segmented {len(summary['outputs'])} input(s): results in {args.out}")
    if summary["skipped"]:
        print(f"skipped {summary['skipped']} unreadable or unusable file(s); see the warnings above")
    return 0


def add_channels_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "channels",
        help="find the objectness channel of a checkpoint (no labels) and store it with it",
        description=(
            "Which mask channel gathers objects differs from run to run. Over sampled frame pairs "
            "of --data (no labels), compute per channel the mask entropy, reconstruction error, "
            "distance of the mask centre from the image centre, its spread over frames, the "
            "spatial spread and the area; choose the objectness channel (lowest entropy, highest "
            "error, most central and compact); print the table, draw the statistics (cf. the "
            "paper's Fig. 3) and store the choice in the checkpoint's metadata, where segment and "
            "evaluate find it. --channel K stores K instead (with --data, the statistics are "
            "still shown). The checkpoint's files are rewritten atomically."
        ),
        epilog="example: objectness channels --checkpoint runs/amd --data /data/davis2016",
    )
    parser.add_argument("--checkpoint", required=True, type=Path, metavar="CKPT",
                        help="a run folder (its last.pt and model.safetensors are both updated), .pt or .safetensors")
    parser.add_argument("--data", metavar="SOURCE",
                        help="frames to sample pairs from: a DAVIS root, frame folders, videos, or 'synthetic'")
    parser.add_argument("--pairs", type=int, default=64, metavar="N", help="frame pairs to sample (default: 64)")
    parser.add_argument("--channel", type=int, metavar="K", help="store channel K instead of the automatic choice")
    parser.add_argument("--figure", type=Path, metavar="PNG",
                        help="where to draw the statistics (default: channels.png beside the checkpoint; replaced)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pair sampling (default: 0)")
    parser.add_argument("--device", default="auto", metavar="D", help="auto, cpu, cuda, ... (default: auto)")
    parser.set_defaults(run=run_channels)


def run_channels(args) -> int:
    from .config import ConfigError
    from .device import resolve_device
    from .inference.channels import (
        channel_statistics,
        channels_figure,
        choose_objectness_channel,
        format_table,
        sample_pairs,
    )
    from .model.checkpoint import load_model, store_objectness_channel
    from .training.step import taught_channel

    if args.data is None and args.channel is None:
        raise ConfigError("channels: give --data to choose the channel from statistics, or --channel K")
    if args.pairs < 1:
        raise ConfigError(f"channels: --pairs must be at least 1, got {args.pairs}")
    device = resolve_device(args.device)
    model, cfg, _ = load_model(args.checkpoint, map_location=device)
    if args.channel is not None and not 0 <= args.channel < cfg.model.num_segments:
        raise ConfigError(f"channels: --channel {args.channel} is not one of the model's "
                          f"{cfg.model.num_segments} channels (0..{cfg.model.num_segments - 1})")
    stats = None
    channel = args.channel
    if args.data is not None:
        data_cfg = dataclasses.replace(cfg.data, source=args.data, workers=0)
        stats = channel_statistics(model, sample_pairs(data_cfg, args.pairs, seed=args.seed), cfg.loss)
        chosen = taught_channel(cfg.loss)
        if chosen is None:
            chosen = choose_objectness_channel(stats)
        else:
            taught = ("its teachers' objectness maps (loss.distill_channel)" if cfg.loss.distill_weight
                      else "the flow's motion masks (loss.motion_mask_channel)")
            print(f"channel {chosen} was trained on {taught}: it is the objectness channel")
        channel = chosen if channel is None else channel
        print(format_table(stats, channel))
        figure = args.figure or _beside(args.checkpoint, "channels.png")
        channels_figure(stats, channel, figure)
        print(f"statistics drawn in {figure}")
        if channel != chosen:
            print(f"automatic choice: {chosen}; stored instead, as asked: {channel}")
    written = store_objectness_channel(args.checkpoint, channel, stats and [s.as_dict() for s in stats])
    print(f"objectness channel {channel} stored in " + ", ".join(str(f) for f in written))
    return 0


def _beside(checkpoint: Path, name: str) -> Path:
    return (checkpoint if checkpoint.is_dir() else checkpoint.parent) / name


def add_evaluate_parser(subparsers) -> None:
    from .evaluation.benchmarks import BENCHMARKS

    benchmarks = "; ".join(f"{name}: {b.description}" for name, b in BENCHMARKS.items())
    parser = subparsers.add_parser(
        "evaluate",
        help="score a checkpoint (or the centre prior) on a benchmark, beside the paper's numbers",
        description=(
            "Segment a benchmark zero-shot and score it as the paper does. Video benchmarks: "
            "J (mean, recall, decay), boundary F and J&F, averaged per sequence then over sequences, "
            "per image (f_A on each frame) or per video (test-time adaptation on each video first). "
            "Saliency benchmarks: F-beta (beta^2 = 0.3; max, mean, adaptive), MAE, S-measure, "
            "E-measure. Writes per_sequence.csv and per_frame.csv or per_image.csv and curves.json, "
            "summary.json, summary.md (ours beside the paper's), predictions/, and report.html (settings, "
            "scores, curves or per-sequence charts, the best and worst frames; figures also in figures/) to "
            f"--out; --compare adds compare.html. Benchmarks -- {benchmarks}."
        ),
        epilog="example: objectness evaluate davis2016 --root /data/DAVIS --checkpoint runs/amd --mode per-video --out eval/davis",
    )
    parser.add_argument("benchmark", choices=list(BENCHMARKS), help="which benchmark layout ROOT has")
    parser.add_argument("--root", type=Path, metavar="DIR", help="the benchmark's folder")
    parser.add_argument("--images", type=Path, metavar="DIR", help="saliency: the images folder (instead of --root)")
    parser.add_argument("--masks", type=Path, metavar="DIR", help="saliency: the masks folder (instead of --root)")
    parser.add_argument("--checkpoint", metavar="CKPT",
                        help="a run folder, last.pt, model.safetensors, or a baseline with no learning: "
                             "'centre-prior' (a blob at the centre), 'saliency-prior' (robust background detection) or "
                             "'rbd-contrast-prior' (that at three scales, averaged with a region contrast)")
    parser.add_argument("--channel", type=int, metavar="K", help="objectness channel (default: the stored one)")
    parser.add_argument("--mode", choices=("per-image", "per-video"), default="per-image",
                        help="video benchmarks: per-image, or per-video with adaptation (default: per-image)")
    parser.add_argument("--adapt", type=_non_negative_int, default=100, metavar="N",
                        help="per-video: adaptation steps per video (default: 100, as the paper)")
    parser.add_argument("--split", metavar="NAME", help="davis2016: ImageSets list (default val); fbms59: train, test or all")
    parser.add_argument("--resolution", metavar="RES", help="davis2016: resolution folder, e.g. 480p (default: the only one)")
    parser.add_argument("--threshold", type=_unit_interval, default=0.5, metavar="T",
                        help="binarisation threshold of the soft map for J and F (default: 0.5)")
    parser.add_argument("--relative-threshold", action="store_true",
                        help="video benchmarks: binarise each map at T times its own maximum instead of at T: the "
                             "same mask where the map reaches 1, a mask where a faint map stays below T (not the "
                             "paper's; default: off; with --reuse, scores the cached maps again)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--reuse", action="store_true", help="score the predictions cached in --out instead of segmenting again")
    parser.add_argument("--overwrite", action="store_true", help="replace an evaluation already in --out")
    parser.add_argument("--compare", nargs="+", type=Path, default=[], metavar="EVAL_DIR",
                        help="earlier evaluation folders of the same benchmark: also write compare.html in --out, "
                             "this evaluation beside them")
    _add_test_time_arguments(parser)
    parser.add_argument("--device", default="auto", metavar="D", help="auto, cpu, cuda, ... (default: auto)")
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args) -> int:
    from .config import ConfigError
    from .evaluation.evaluate import evaluate, format_markdown
    from .inference.segmenter import default_checkpoint, load_segmenter

    if args.root is None and (args.images is None or args.masks is None):
        raise ConfigError("evaluate: give --root (or, for a saliency set, --images and --masks)")
    checkpoint = args.checkpoint if args.checkpoint is not None else default_checkpoint()
    segmenter = load_segmenter(checkpoint, channel=args.channel, device=args.device, scales=args.scales,
                               guided_radius=args.guided_radius, precision=args.precision, guided_eps=args.guided_eps)
    summary = evaluate(segmenter, args.benchmark, args.root, args.out, mode=args.mode, adapt_steps=args.adapt,
                       split=args.split, resolution=args.resolution, images=args.images, masks=args.masks,
                       threshold=args.threshold, relative_threshold=args.relative_threshold, reuse=args.reuse,
                       overwrite=args.overwrite, model_name=str(checkpoint), compare=args.compare)
    print(format_markdown(summary))
    print(f"tables, summary, report.html{', compare.html' if args.compare else ''} and predictions in {args.out}")
    return 0


def add_report_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="redraw the HTML report of an evaluation folder, or compare several",
        description=(
            "Draw, from evaluation folders alone and without a model, what `objectness evaluate` draws. "
            "With one folder: report.html (settings, scores beside the paper's, precision-recall and "
            "F-beta curves or J and F per sequence and J over frames, the best and worst frames or "
            "images) and its PNGs in figures/. With several folders of one benchmark: compare.html, "
            "their scores in one table, their curves overlaid (saliency) or their per-sequence bars side "
            "by side (video). The pages are self-contained; what an older evaluation lacks (curves.json, "
            "per_frame.csv) is noted in the page."
        ),
        epilog="example: objectness report eval/davis-image eval/davis-video --out eval/davis-compare",
    )
    parser.add_argument("evaluations", nargs="+", type=Path, metavar="DIR",
                        help="evaluation folders written by objectness evaluate")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="where report.html (one folder) or compare.html (several) and figures/ go")
    parser.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    parser.set_defaults(run=run_report)


def run_report(args) -> int:
    from .evaluation.report import write_comparison, write_report

    if len(args.evaluations) == 1:
        page = write_report(args.evaluations[0], args.out, overwrite=args.overwrite)
    else:
        page = write_comparison(args.evaluations, args.out, overwrite=args.overwrite)
    print(f"report in {page}")
    return 0


def add_bench_parser(subparsers) -> None:
    from .tools.bench import DEFAULT_PRESETS, PRECISIONS, SECTIONS

    parser = subparsers.add_parser(
        "bench",
        help="measure training, inference and adaptation speed on this machine",
        description=(
            "Measure how fast AMD runs on this device with random weights and inputs: a training step "
            "(forward, backward, Adam) and appearance-network inference at 384 x 384 and at a 480p frame, each "
            "in fp32 and in bf16 autocast with their ratio, test-time adaptation on a synthetic 480p video and "
            "segmenting its frames in the preset's precision, and with --data the training loader's pairs/s. "
            "Reports medians after warm-up, peak memory, FLOPs and the fraction of the peak measured in the same "
            "run (the best of several matmuls and convolutions and of the models' own convolutions, each timed "
            "alone, in the measurement's dtype); prints a table and writes it as JSON to --out. --compare prints "
            "two runs side by side. Set OMP_NUM_THREADS to choose the CPU threads."
        ),
        epilog="example: objectness bench --config cpu-small --only train infer --out bench.json",
    )
    parser.add_argument("--config", dest="presets", nargs="+", default=list(DEFAULT_PRESETS), metavar="PRESET_OR_YAML",
                        help=f"presets or YAML files to measure (default: {' '.join(DEFAULT_PRESETS)})")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key of every preset (repeatable)")
    parser.add_argument("--device", default="auto", metavar="D", help="auto, cpu, cuda, cuda:1, ... (default: auto)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), metavar="SECTION",
                        help=f"measure only these sections: {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--repeats", type=int, default=3, metavar="N", help="timed calls per median (default: 3)")
    parser.add_argument("--warmup", type=int, default=1, metavar="N", help="untimed calls first (default: 1)")
    parser.add_argument("--adapt-steps", type=int, metavar="N",
                        help="adaptation steps to time; fewer than 100 are projected to 100 (default: 2 on CPU, 100 on CUDA)")
    parser.add_argument("--frames", type=int, default=8, metavar="N",
                        help="frames of the synthetic 480p video to adapt on and segment (default: 8)")
    parser.add_argument("--batch", type=int, metavar="N",
                        help="images per appearance-network call (default: 1 on CPU, 8 on CUDA)")
    parser.add_argument("--matmul-size", type=int, metavar="N",
                        help="size N of the kernels that measure the peak: N x N matmuls and convolutions sized from it "
                             "(default: 2048 on CPU, 8192 on CUDA)")
    parser.add_argument("--data", metavar="SOURCE",
                        help="measure the training loader on this data.source (DAVIS root, folders, videos, synthetic)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile two training steps per preset: top ops, a timed breakdown of the step, "
                             "and a chrome trace <out stem>.<preset>.trace.json beside --out")
    parser.add_argument("--precision", dest="precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                        metavar="P", help="measure training and inference in these: fp32, bf16 (default: both)")
    parser.add_argument("--out", type=Path, metavar="JSON", help="write the results to this JSON file")
    parser.add_argument("--overwrite", action="store_true", help="replace --out (and the traces) if they exist")
    parser.add_argument("--compare", nargs="+", type=Path, metavar="JSON",
                        help="one file: measure, then print this run beside it; two files: print them side by side "
                             "and measure nothing")
    parser.set_defaults(run=run_bench)


def run_bench(args) -> int:
    from .config import ConfigError
    from .tools.bench import (
        BenchOptions,
        benchmark,
        check_out,
        format_comparison,
        format_report,
        load_configs,
        read_report,
        write_report,
    )

    compare = [read_report(path) for path in args.compare or []]
    if len(compare) > 2:
        raise ConfigError("bench: --compare takes one file (to compare a new run with) or two")
    if len(compare) == 2:
        print(format_comparison(*compare, names=[str(path) for path in args.compare]))
        return 0
    options = BenchOptions(sections=tuple(args.only), repeats=args.repeats, warmup=args.warmup,
                           adapt_steps=args.adapt_steps, video_frames=args.frames, infer_batch=args.batch,
                           matmul_size=args.matmul_size, data=args.data, profile=args.out if args.profile else None,
                           precisions=tuple(dict.fromkeys(args.precisions)))
    check_out(args.out, args.presets, args.profile, args.overwrite)
    configs = load_configs(args.presets, args.overrides)
    result = benchmark(configs, args.device, options)
    print(format_report(result))
    if args.out is not None:
        write_report(result, args.out, overwrite=args.overwrite)
        print(f"results in {args.out}")
    if compare:
        print()
        print(format_comparison(compare[0], result, names=[str(args.compare[0]), "this run"]))
    return 0


def add_finetune_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="semantic segmentation from AMD's appearance network: fine-tune, then score mIoU",
        description=(
            "Fine-tune f_A for semantic segmentation as the paper does: its backbone, from AMD weights (--init) or "
            "random (--init scratch), with the FCN head and a fresh classifier for the dataset's classes; "
            "per-pixel cross-entropy (void ignored), SGD with momentum, poly lr decay, random scale, crop "
            "and flip. Writes config.yaml, metrics.jsonl, panels/ (image, prediction, ground truth), last.pt "
            "and model.safetensors to --out, then scores the evaluation split (mIoU, per-class IoU, pixel "
            "and mean class accuracy from one confusion matrix at the labels' full resolution) into "
            "--out/eval-<split>/ (per_class.csv, summary.json, summary.md beside the paper's VOC numbers). "
            "--eval scores an existing run without training. Datasets: camvid (SegNet's layout), voc "
            "(VOC 2012, + SBD's SegmentationClassAug for train_aug), folders (images/, labels/, classes.txt)."
        ),
        epilog="example: objectness finetune --config finetune-cpu --dataset camvid --data ../shared/data/camvid "
               "--init src/objectness/weights/amd-davis2016-dutstr.safetensors --out runs/camvid-amd",
    )
    parser.add_argument("--config", metavar="PRESET_OR_YAML",
                        help="finetune-paper (VOC, the paper's recipe; the default values), finetune-cpu or a YAML "
                             "file; default with --resume or --eval: the run's config.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key (repeatable), e.g. --set train.steps=500")
    parser.add_argument("--init", metavar="WEIGHTS",
                        help="AMD weights for the backbone (run folder, last.pt or .safetensors of the same "
                             "backbone architecture; a fine-tuned run also works), or 'scratch' for random "
                             "weights; required for a new run")
    parser.add_argument("--data", metavar="ROOT", help="data.root: the dataset's folder")
    parser.add_argument("--dataset", choices=("camvid", "voc", "folders"), help="data.dataset: ROOT's layout")
    parser.add_argument("--out", required=True, type=Path, metavar="RUN_DIR", help="the run folder")
    parser.add_argument("--steps", type=int, metavar="N", help="train.steps")
    parser.add_argument("--device", metavar="D", help="train.device: auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--split", metavar="NAME", help="the split to score (default: data.eval_split)")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    existing.add_argument("--overwrite", action="store_true", help="delete the run in --out and start again")
    existing.add_argument("--eval", action="store_true", help="only score the run in --out (no training)")
    parser.add_argument("--no-eval", action="store_true", help="train only; do not score afterwards")
    parser.set_defaults(run=run_finetune)


def run_finetune(args) -> int:
    from .config import ConfigError, FinetuneConfig, load_config
    from .semantic.evaluate import evaluate_run, format_markdown
    from .semantic.finetune import finetune

    if args.eval:
        summary = evaluate_run(args.out, data_root=args.data, split=args.split, device=args.device or "auto")
        print(format_markdown(summary))
        print(f"per-class table and summary in {summary['out_dir']}")
        return 0
    if args.resume and args.init:
        raise ConfigError("--init starts a new run from other weights and --resume continues this one: pass one")
    preset = args.config
    if preset is None and args.resume and (args.out / "config.yaml").is_file():
        preset = str(args.out / "config.yaml")
    flags = {"data.root": args.data, "data.dataset": args.dataset, "train.steps": args.steps,
             "train.device": args.device, "train.init": args.init}
    overrides = args.overrides + [f"{key}={value}" for key, value in flags.items() if value is not None]
    cfg = load_config(preset, overrides, cls=FinetuneConfig)
    if not args.resume and cfg.train.init is None:
        raise ConfigError("finetune: pass --init WEIGHTS (AMD weights for the backbone) or --init scratch")
    summary = finetune(cfg, args.out, resume=args.resume, overwrite=args.overwrite)
    print(f"fine-tuned to step {summary['step']}: loss {summary['loss']:.4f}; weights in {summary['weights']}")
    if not args.no_eval:
        scores = evaluate_run(args.out, split=args.split, device=cfg.train.device)
        print(format_markdown(scores))
        print(f"per-class table and summary in {scores['out_dir']}")
    return 0


def add_semantic_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "semantic",
        help="label images with a fine-tuned semantic-segmentation model",
        description=(
            "Predict a class for every pixel of images (files or folders) with a model from "
            "`objectness finetune`. Writes <stem>_classes.png (a palette PNG: each pixel's value is its class "
            "index, shown in the class colours), <stem>_overlay.jpg and legend.png to --out."
        ),
        epilog="example: objectness semantic street.jpg frames/ --checkpoint runs/camvid-amd --out labels",
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files and folders of images")
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="a fine-tuned run folder, its last.pt or model.safetensors")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--device", default="auto", metavar="D", help="auto, cpu, cuda, ... (default: auto)")
    parser.add_argument("--overwrite", action="store_true", help="write into an output folder that holds files")
    parser.set_defaults(run=run_semantic)


def run_semantic(args) -> int:
    from .semantic.model import load_semantic_model
    from .semantic.predict import predict

    model, cfg, meta = load_semantic_model(args.checkpoint, args.device)
    written = predict(model, meta, args.inputs, args.out, cfg.data.test_short_edge, overwrite=args.overwrite)
    print(f"labelled {len(written)} image(s): class maps, overlays and legend.png in {args.out}")
    return 0


def add_app_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "app",
        help="a local page: drop images or a short video, see the objectness map, mask and overlay",
        description=(
            "Serve a page in the browser on this computer (needs the extra: pip install 'objectness[app]'): "
            "drop images or a short video (its first 300 frames), pick a checkpoint, see each frame's objectness "
            "map, mask and overlay, move the threshold live, switch between one scale and the checkpoint's test "
            "scales and the guided filter on or off, adapt to a video first, and download a zip of the results. "
            "It listens on 127.0.0.1 only unless --host says otherwise, sends nothing anywhere, and keeps its "
            "files in a temporary folder removed when it stops (Ctrl+C)."
        ),
        epilog="example: objectness app --port 7860   (then open http://127.0.0.1:7860)",
    )
    parser.add_argument("--checkpoint", metavar="CKPT",
                        help="the page's first choice: a run folder, last.pt, .safetensors or 'centre-prior' "
                             "(default: the shipped model)")
    parser.add_argument("--host", default="127.0.0.1", metavar="ADDRESS",
                        help="the address to listen on (default: 127.0.0.1, this computer only)")
    parser.add_argument("--port", type=int, metavar="N", help="the port (default: 7860 or the next free one)")
    parser.add_argument("--device", default="auto", metavar="D", help="auto, cpu, cuda, ... (default: auto)")
    parser.set_defaults(run=run_app)


def run_app(args) -> int:
    from .tools.app import AppError, serve

    try:
        serve(args.host, args.port, args.checkpoint, args.device,
              announce=lambda url: print(f"objectness app on {url} (Ctrl+C stops it and removes its files)",
                                         flush=True))
    except AppError as err:
        print(f"objectness: error: {err}", file=sys.stderr)
        return 2
    return 0


SUBCOMMANDS = (add_train_parser, add_channels_parser, add_segment_parser, add_evaluate_parser, add_report_parser,
               add_demo_parser, add_bench_parser, add_finetune_parser, add_semantic_parser, add_app_parser)


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
    from .config import ConfigError
    from .data.video import DataError
    from .evaluation.evaluate import EvaluationError
    from .model.checkpoint import CheckpointError

    return ConfigError, DataError, CheckpointError, EvaluationError, FileExistsError


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _output_error(err: OSError) -> str:
    """A file-system error (read-only, missing, full, not a folder) as one line naming the path."""
    path = err.filename or ""
    reason = err.strerror or _one_line(err)
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        reason += " (a file stands where a folder is needed)"
    return f"{path}: {reason}" if path else reason


def main(argv=None) -> int:
    """Run one command; bad input is one line on stderr and exit code 2, a full, read-only or missing
    output place too; a training stopped by a signal or by a loss that is no longer finite is one line
    and a non-zero code. Other errors are the package's own and show their traceback."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from .training.run import Interrupted, TrainingError
    try:
        return args.run(args)
    except Interrupted as err:
        print(f"objectness: interrupted by {_one_line(err)}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("objectness: interrupted", file=sys.stderr)
        return 130
    except TrainingError as err:
        print(f"objectness: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except Exception as err:
        if isinstance(err, OSError) and err.errno is not None:  # the file system's own error
            print(f"objectness: error: {_output_error(err)}", file=sys.stderr)
            return 2
        if isinstance(err, _user_errors()):
            print(f"objectness: error: {_one_line(err)}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
