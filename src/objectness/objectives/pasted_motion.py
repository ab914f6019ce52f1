"""Motion for still images: a pasted object moved against its background (not the paper's).

Route 3 of issue 24. A still image has no motion to fit, but a composite has one
we can choose: an object cut out of one image (its target map as the alpha,
``distillation.pasted_layers``) and laid over another image is a scene in which
the object may move one way and the background another. Each part gets a random
affine motion (a camera's pan, zoom and rotation for the background; a larger
one for the object), and the composite's known flow is their blend by the alpha:

    F(p) = alpha(p) A_object(p) + (1 - alpha(p)) A_background(p).

f_A's masks of the composite then fit this flow as they fit a video's classical
flow (``flow_fit.flow_fit_loss``): masks that part the pasted object from its new
background explain it, on real textures from thousands of scenes. Only the
first frame and the flow enter the flow fit, so no second frame is rendered.
The background image's own object moves with the background. Off in the
``paper`` preset (``loss.image_motion_weight`` = 0).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

BACKGROUND_MOTION = (0.03, 0.1)  # (linear part, translation) bounds of the background's affine motion, grid units
OBJECT_MOTION = (0.1, 0.3)  # the same for the pasted object: it moves further than the camera


def random_affine(batch: int, linear: float, translation: float, generator=None) -> torch.Tensor:
    """(B, 2, 3) affine motions x -> M x + t on the normalised grid (-1..1): M the identity plus
    U(-linear, linear) in each entry, t U(-translation, translation) in each coordinate."""
    uniform = lambda *shape: 2 * torch.rand(*shape, generator=generator, device="cpu") - 1  # noqa: E731
    theta = torch.zeros(batch, 2, 3)
    theta[:, :, :2] = torch.eye(2) + linear * uniform(batch, 2, 2)
    theta[:, :, 2] = translation * uniform(batch, 2)
    return theta


def affine_flow(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 2, H, W): the flow in pixels (x, y) that the motions ``theta`` (B, 2, 3) give each pixel
    centre of an H x W image (normalised coordinates as ``F.affine_grid`` with align_corners False)."""
    grid = F.affine_grid(theta, [theta.shape[0], 1, height, width], align_corners=False)  # (B, H, W, 2): M x + t
    identity = torch.eye(2, 3, device=theta.device).expand_as(theta)
    points = F.affine_grid(identity, [theta.shape[0], 1, height, width], align_corners=False)
    displacement = (grid - points) * theta.new_tensor([width / 2, height / 2])  # grid units to pixels
    return displacement.permute(0, 3, 1, 2)


def pasted_motion_flow(alpha: torch.Tensor, generator=None) -> tuple:
    """The known flow of composites whose pasted object (``alpha`` (B, H, W) in 0..1) moves by one
    random affine motion and the rest by another: (flow (B, 2, H, W) in pixels on alpha's device,
    the object's motions (B, 2, 3), the background's (B, 2, 3); the motions drawn on the CPU)."""
    b, height, width = alpha.shape
    background = random_affine(b, *BACKGROUND_MOTION, generator=generator)
    moved = random_affine(b, *OBJECT_MOTION, generator=generator)
    alpha = alpha.float()[:, None]
    with torch.autocast(alpha.device.type, enabled=False):  # in fp32 under bf16 training too: a known flow, exactly
        flow = (alpha * affine_flow(moved.to(alpha.device), height, width)
                + (1 - alpha) * affine_flow(background.to(alpha.device), height, width))
    return flow, moved, background
