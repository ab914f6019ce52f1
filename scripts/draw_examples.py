"""Draw a model's examples: each image, its objectness map and the mask drawn over it, one row each.

    python scripts/draw_examples.py docs/shipped-model-examples.jpg --images \\
        ../shared/data/davis2016/JPEGImages/240p/{bear/00040,dance-jump/00030,car-turn/00040}.jpg \\
        ../shared/data/sod/images/{100075,183055,306005}.jpg

(docs/shipped-model-examples.jpg: three DAVIS training frames, then the 1st, 101st
and 201st SOD images in name order.)

The model is the shipped one unless --checkpoint names another; maps are made
as ``objectness segment`` makes them (its test scales and guided filter), and
the mask is the map above --threshold. Rows are scaled to --height pixels.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from objectness.data.video import DataError, read_image
from objectness.files import atomic_write
from objectness.inference.segmenter import load_segmenter, segment_images
from objectness.visualize import overlay, soft_map_to_png


def example_rows(segmenter, paths, height: int, threshold: float) -> Image.Image:
    """One row per image (image | map | mask over the image), stacked; each tile ``height`` pixels high."""
    rows = []
    for path in paths:
        image = read_image(path)
        soft = segment_images(segmenter, [image])[0]
        tiles = [Image.fromarray(image), soft_map_to_png(soft).convert("RGB"),
                 overlay(Image.fromarray(image), soft > threshold)]
        width = round(image.shape[1] * height / image.shape[0])
        rows.append(np.concatenate([np.asarray(tile.resize((width, height))) for tile in tiles], axis=1))
    widest = max(row.shape[1] for row in rows)
    padded = [np.pad(row, ((0, 0), (0, widest - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    return Image.fromarray(np.concatenate(padded, axis=0))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the figure to write (.jpg or .png)")
    parser.add_argument("--images", nargs="+", type=Path, required=True, help="the images, one row each")
    parser.add_argument("--checkpoint", help="a run folder or weights file (default: the shipped model)")
    parser.add_argument("--height", type=int, default=160, help="row height in pixels (default: 160)")
    parser.add_argument("--threshold", type=float, default=0.5, help="mask threshold (default: 0.5)")
    args = parser.parse_args(argv)
    try:
        figure = example_rows(load_segmenter(args.checkpoint, device="cpu"), args.images, args.height, args.threshold)
    except DataError as err:
        print(f"draw_examples: {err}", file=sys.stderr)
        return 2
    atomic_write(args.out, lambda temporary: figure.save(temporary, quality=88))
    print(f"{len(args.images)} examples drawn in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
