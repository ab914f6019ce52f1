"""Per-segment flow fitting: masks that explain a classical flow (not the paper's).

A bootstrap for the binding of appearance and motion. AMD's masks learn only
through view synthesis, whose gradient reaches f_A once the motion network
already tells segments apart; on a CPU budget that takes hours. Here a dense
classical flow (``data/classical_flow.py``) stands in for the motion: inside each
soft mask S_m the flow is fitted by one motion model, constant (one vector, as
segment flow, eq. 5) or affine (a camera's pan, zoom and rotation), by
weighted least squares, and the loss is the share of the flow's variance the
fits leave unexplained:

    L = sum_m sum_p S_m(p) |F(p) - A_m x_p|^2 / sum_p |F(p) - mean F|^2.

A moving object and its background cannot share one motion model, so masks
that split them lower L; a flow one model explains gives L = 0 for any masks.
Off in the ``paper`` preset (``loss.flow_fit_weight`` = 0).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import ConfigError

MODELS = {"constant": 1, "affine": 3}  # basis functions per coordinate: 1 | (1, x, y)
RIDGE = 1e-4  # keeps the normal equations solvable for a mask that covers (almost) nothing
VARIANCE_FLOOR = 0.25  # px^2: a pair with (almost) no motion gives a small loss, not a division by ~0


def motion_basis(height: int, width: int, model: str, device=None) -> torch.Tensor:
    """(h*w, k): the basis of the motion model at each pixel; coordinates in -1..1."""
    if model not in MODELS:
        raise ConfigError(f"loss.flow_fit_model must be one of {', '.join(MODELS)}, got {model!r}")
    ones = torch.ones(height * width, 1, device=device)
    if model == "constant":
        return ones
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height, device=device),
                            torch.linspace(-1, 1, width, device=device), indexing="ij")
    return torch.cat([ones, xs.reshape(-1, 1), ys.reshape(-1, 1)], dim=1)


def fit_segment_motion(flow: torch.Tensor, masks: torch.Tensor, model: str = "affine") -> torch.Tensor:
    """Each segment's motion model fitted to ``flow`` by least squares weighted by its mask.

    flow: (B, 2, h, w); masks: (B, c, h, w). Returns the fitted flow of every
    segment, (B, c, 2, h, w).
    """
    b, c, h, w = masks.shape
    basis = motion_basis(h, w, model, flow.device)  # (P, k)
    weights = masks.flatten(2)  # (B, c, P)
    targets = flow.flatten(2).transpose(1, 2)  # (B, P, 2)
    gram = torch.einsum("bcp,pk,pl->bckl", weights, basis, basis)  # (B, c, k, k)
    gram = gram + RIDGE * weights.sum(-1).mean() * torch.eye(basis.shape[1], device=flow.device)
    moments = torch.einsum("bcp,pk,bpd->bckd", weights, basis, targets)  # (B, c, k, 2)
    coefficients = torch.linalg.solve(gram, moments)  # (B, c, k, 2)
    fitted = torch.einsum("pk,bckd->bcdp", basis, coefficients)  # (B, c, 2, P)
    return fitted.reshape(b, c, 2, h, w)


def flow_fit_loss(flow: torch.Tensor, masks: torch.Tensor, model: str = "affine") -> torch.Tensor:
    """The share of the flow's variance that per-segment motion models leave unexplained, averaged over the batch.

    flow: (B, 2, h, w) classical flow in pixels; masks: (B, c, h', w') soft
    masks (softmax over c), resized to the flow's grid. Fits are computed in
    fp32 and their gradient flows to the masks both through the residual and
    through the fitted models.
    """
    flow = flow.float()
    masks = masks.float()
    if masks.shape[-2:] != flow.shape[-2:]:
        masks = F.interpolate(masks, size=flow.shape[-2:], mode="bilinear", align_corners=False)
    with torch.autocast(flow.device.type, enabled=False):
        fitted = fit_segment_motion(flow, masks, model)  # (B, c, 2, h, w)
        residual = (flow.unsqueeze(1) - fitted).pow(2).sum(2)  # (B, c, h, w)
        unexplained = (masks * residual).sum(dim=(1, 2, 3))  # (B,)
        centred = flow - flow.mean(dim=(2, 3), keepdim=True)
        variance = centred.pow(2).sum(1).sum(dim=(1, 2))  # (B,)
        pixels = flow.shape[-1] * flow.shape[-2]
        return (unexplained / (variance + VARIANCE_FLOOR * pixels)).mean()
