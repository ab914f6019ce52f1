"""Pictures of what the model does: training panels, mask strips, overlays.

Every tile is a float (3, H, W) tensor in 0..1 on the CPU until the row is
assembled; tiles are laid side by side with no padding, so a row of n tiles of
width W is n * W pixels wide.
"""

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torchvision.transforms.functional import to_pil_image
from torchvision.utils import draw_segmentation_masks, flow_to_image, make_grid

from .files import atomic_write


def _cpu(tensor):
    return torch.as_tensor(tensor).detach().float().cpu()


def _resize(tile, size):
    """Bilinear resize of a (C, h, w) tile to size = (H, W)."""
    if tuple(tile.shape[-2:]) == tuple(size):
        return tile
    return F.interpolate(tile[None], size=size, mode="bilinear", align_corners=False)[0]


def _grey(single_channel):
    """(H, W) map in 0..1 -> (3, H, W) grey tile."""
    return single_channel.clamp(0, 1).expand(3, *single_channel.shape)


def _flow_tile(flow):
    """(2, H, W) flow in pixels -> (3, H, W) tile in the standard flow colours."""
    return flow_to_image(_cpu(flow)).float() / 255


def _mask_tiles(masks, size):
    """(c, h, w) soft masks -> c grey tiles of the given size."""
    masks = _resize(_cpu(masks), size)  # (c, H, W)
    return [(f"mask {m}", _grey(mask)) for m, mask in enumerate(masks)]


def _error_tile(recon, frame):
    """Mean absolute error over channels, scaled so the largest error is white."""
    error = (_cpu(recon) - _cpu(frame)).abs().mean(dim=0)  # (H, W)
    return _grey(error / error.max().clamp_min(1e-8))


def panel_row(tiles):
    """[(label, (3, H, W) tile)] -> one labelled PIL image, tiles side by side."""
    height, width = tiles[0][1].shape[-2:]
    images = [_resize(tile, (height, width)) for _, tile in tiles]
    row = to_pil_image(make_grid(images, nrow=len(images), padding=0).clamp(0, 1))
    draw = ImageDraw.Draw(row)
    for index, (label, _) in enumerate(tiles):
        x = index * width + 2
        draw.rectangle(draw.textbbox((x, 2), label), fill=(0, 0, 0))
        draw.text((x, 2), label, fill=(255, 255, 255))
    return row


def _as_float_image(image):
    """uint8 or float (3, H, W) tensor -> float (3, H, W) in 0..1 on the CPU."""
    image = torch.as_tensor(image).detach().cpu()
    return image.float() / 255 if image.dtype == torch.uint8 else image.float()


def training_panel(frame1, frame2, out, recon1):
    """One row for the first pair of a batch: frames, masks, segment flow, reconstruction, error.

    frame1, frame2, recon1: (B, 3, H, W) in 0..1; out.masks1: (B, c, h, w) softmax masks;
    out.flows12[0]: (B, 2, H, W) full-resolution segment flow in pixels.
    """
    frame1, frame2, recon1 = _cpu(frame1[0]), _cpu(frame2[0]), _cpu(recon1[0])
    size = tuple(frame1.shape[-2:])
    tiles = [("frame 1", frame1), ("frame 2", frame2)]
    tiles += _mask_tiles(out.masks1[0], size)
    tiles += [
        ("segment flow", _flow_tile(out.flows12[0][0])),
        ("reconstruction", recon1.clamp(0, 1)),
        ("|error|", _error_tile(recon1, frame1)),
    ]
    return panel_row(tiles)


def mask_strip(image, masks, flow=None):
    """The image, each of its c mask channels and optionally the flow, side by side.

    image: (3, H, W) float in 0..1 or uint8; masks: (c, h, w) in 0..1; flow: (2, h', w') in pixels.
    """
    image = _as_float_image(image)
    tiles = [("image", image)] + _mask_tiles(masks, tuple(image.shape[-2:]))
    if flow is not None:
        tiles.append(("flow", _flow_tile(flow)))
    return panel_row(tiles)


def overlay(image, mask, color=(255, 0, 0), alpha=0.5):
    """Tint the pixels of a bool (H, W) mask on an RGB uint8 image; other pixels are unchanged.

    image: PIL image, (H, W, 3) uint8 array or (3, H, W) uint8 tensor.
    """
    if isinstance(image, (Image.Image, np.ndarray)):
        image = torch.from_numpy(np.array(image.convert("RGB") if isinstance(image, Image.Image) else image))
        image = image.permute(2, 0, 1)
    # Blend in float and round: draw_segmentation_masks on uint8 truncates, which would
    # shift unmasked pixels by one grey level for some alphas.
    image = torch.as_tensor(image).detach().cpu().double() / 255  # (3, H, W)
    mask = torch.as_tensor(mask).detach().cpu().bool()  # (H, W)
    blended = draw_segmentation_masks(image, mask, alpha=alpha, colors=tuple(color))
    return to_pil_image((blended * 255).round().to(torch.uint8))


def soft_map_to_png(prob):
    """(H, W) soft map in 0..1 -> 8-bit grey PIL image (0 -> black, 1 -> white)."""
    prob = _cpu(prob).clamp(0, 1)
    return Image.fromarray((prob * 255).round().to(torch.uint8).numpy())


def save_image_atomic(img, path):
    """Write a PIL image so that path holds either the old file or the complete new one."""
    atomic_write(path, img.save)


def save_figure_atomic(figure, path):
    """Write a matplotlib figure atomically (format from the suffix: .png, .pdf, .svg)."""
    atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=120))
