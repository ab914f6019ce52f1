"""Frame packs: the training video in one file small enough to carry to a lent GPU (issue 12).

    python scripts/pack_frames.py pack ../shared/data/davis2016 carry/davis2016-240p-train.npz
    python scripts/pack_frames.py unpack carry/davis2016-240p-train.npz /tmp/davis-frames

``pack`` re-encodes every frame of a data source (a DAVIS root: its ``--split``
at ``--resolution``) as WebP into one .npz; ``unpack`` writes a pack back as
a folder of frame folders of JPEGs, which every ``--data`` reads. Training
reads a pack directly with ``data.on_device=true``.
"""
import argparse
import sys
from pathlib import Path

from objectness.config import DataConfig
from objectness.data.device_frames import pack_frames, unpack_frames


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("pack", help="re-encode a data source's frames into one .npz")
    pack.add_argument("source", help="a DAVIS root, a folder of frame folders, or video files")
    pack.add_argument("out", type=Path, help="the .npz to write")
    pack.add_argument("--split", default="train", help="DAVIS ImageSets list (default: train; 'all' for every sequence)")
    pack.add_argument("--resolution", default=None, help="DAVIS resolution folder (default: the largest)")
    pack.add_argument("--format", default="WEBP", choices=("WEBP", "JPEG"), help="image format (default: WEBP)")
    pack.add_argument("--quality", type=int, default=75, help="encoder quality (default: 75)")
    unpack = commands.add_parser("unpack", help="write a pack as a folder of frame folders")
    unpack.add_argument("pack", type=Path)
    unpack.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pack":
        split = None if args.split == "all" else args.split
        cfg = DataConfig(source=args.source, davis_split=split, davis_resolution=args.resolution)
        info = pack_frames(cfg, args.out, args.format, args.quality)
        print(f"{info['frames']} frames of {info['videos']} videos in {args.out}: {info['bytes'] / 2**20:.1f} MiB")
    else:
        print(f"frames of {args.pack} in {unpack_frames(args.pack, args.folder)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
