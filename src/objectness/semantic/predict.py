"""Class maps of users' images from a fine-tuned model: ``objectness semantic``."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ..data.video import DataError, natural_key, read_image
from ..device import resolve_device
from ..files import check_output_folder, distinct_names
from ..visualize import save_image_atomic
from .data import IMAGE_SUFFIXES
from .metrics import VOID
from .model import class_logits

log = logging.getLogger(__name__)


def colourise(classes: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) class indices (VOID allowed) -> (H, W, 3) uint8 colours."""
    full = np.zeros((256, 3), dtype=np.uint8)
    full[: len(palette)] = palette
    if len(palette) <= VOID:
        full[VOID] = (255, 255, 255)
    return full[np.asarray(classes, dtype=np.uint8)]


def network_size(height: int, width: int, short_edge) -> tuple:
    """(H, W) the network sees at test time: shorter edge ``short_edge`` (None: the image's own)."""
    if not short_edge:
        return height, width
    scale = short_edge / min(height, width)
    return max(8, round(height * scale)), max(8, round(width * scale))


@torch.no_grad()
def predict_classes(model, image: np.ndarray, short_edge, device) -> np.ndarray:
    """uint8 (H, W, 3) image -> uint8 (H, W) class indices at the image's full resolution."""
    height, width = image.shape[:2]
    batch = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float().to(device) / 255  # (1, 3, H, W)
    size = network_size(height, width, short_edge)
    if size != (height, width):
        batch = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)
    return class_logits(model, batch, size=(height, width))[0].argmax(0).to(torch.uint8).cpu().numpy()


def predict(model, meta: dict, inputs: list, out_dir, short_edge, device=None, progress: bool = True,
            overwrite: bool = False) -> list:
    """Colour-coded class maps (<stem>_classes.png: palette PNG, pixel value = class index) and overlays
    (<stem>_overlay.jpg) of image files and folders of images, and legend.png, in ``out_dir``.

    Images of one name from different folders get distinct stems (x, x-2, ...); an ``out_dir``
    that holds something is refused unless ``overwrite``.
    """
    device = next(model.parameters()).device if device is None else resolve_device(device)
    out_dir = Path(out_dir)
    files = _image_files(inputs)
    check_output_folder(out_dir, overwrite)
    palette = np.asarray(meta["palette"], dtype=np.uint8)
    written = []
    stems = distinct_names([path.stem for path in files])
    for path, stem in tqdm(list(zip(files, stems)), desc="images", unit="image", disable=not progress):
        image = read_image(path)
        classes = predict_classes(model, image, short_edge, device)
        class_map = Image.fromarray(classes, mode="P")
        class_map.putpalette(colourise(np.arange(256), palette).reshape(-1).tolist())
        overlay = Image.fromarray((0.5 * image + 0.5 * colourise(classes, palette)).round().astype(np.uint8))
        save_image_atomic(class_map, out_dir / f"{stem}_classes.png")
        save_image_atomic(overlay, out_dir / f"{stem}_overlay.jpg")
        written.append(out_dir / f"{stem}_classes.png")
    save_image_atomic(legend(meta["classes"], palette), out_dir / "legend.png")
    return written


def _image_files(inputs: list) -> list:
    files = []
    for path in map(Path, inputs):
        if path.is_dir():
            files += sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"input not found: {path}")
    if not files:
        raise DataError("no images among the inputs (.jpg, .jpeg, .png)")
    return files


def legend(classes: list, palette: np.ndarray) -> Image.Image:
    """One row per class: its colour and its name."""
    from PIL import ImageDraw

    image = Image.new("RGB", (200, 18 * len(classes) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for k, name in enumerate(classes):
        draw.rectangle((4, 4 + 18 * k, 30, 18 + 18 * k), fill=tuple(int(c) for c in palette[k]))
        draw.text((36, 5 + 18 * k), f"{k} {name}", fill=(0, 0, 0))
    return image
