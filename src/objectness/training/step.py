"""One optimisation step of AMD's objective (docs/method.md#the-objective): frames in, masks and motion, loss, backward.

``training_step`` reads top to bottom as the paper's method, with the terms
that are not the paper's (flow fit, motion masks, distillation, pasted
objects, still images, their objects pasted and moved) after it, each off
unless its weight is set. ``optimisation_step`` wraps it in autocast,
backward and the optimizer; test-time adaptation (adapt.py) runs the same step.
"""
import dataclasses

import torch
import torch.nn.functional as F

from ..config import Config, ConfigError
from ..device import autocast
from ..model.amd import AMDOutput
from ..objectives.distillation import confidence, distillation_loss, paste_objects, pasted_layers
from ..objectives.flow_fit import flow_fit_loss
from ..objectives.motion_masks import motion_mask_loss
from ..objectives.pasted_motion import pasted_motion_flow
from ..objectives.view_synthesis import view_synthesis_loss
from . import distributed
from .run import poly_schedule


def training_step(model, frames, loss_cfg, flows=None, teachers=None, images=None):
    """The objective on one batch of pairs; frames: (B, 2, 3, H, W) in 0..1.

    flows: (B, 2, 2, H, W) classical flow of each frame towards the other, for
    the flow fit and the motion masks (``loss.flow_fit_weight``,
    ``loss.motion_mask_weight``, not the paper's); teachers: the Teachers
    whose mean objectness map the distillation teaches (``loss.distill_weight``,
    and on pasted objects ``loss.paste_weight``; not the paper's); images: still
    images and their target maps, {"images": (Bi, 3, H, W), "targets": (Bi, H, W)}
    (``loss.image_weight``, data/images.py; not the paper's). Returns
    (loss, terms, out): the scalar to minimise, its parts, the model output.
    """
    frame1, frame2 = frames[:, 0], frames[:, 1]  # (B, 3, H, W) each
    if loss_cfg.view_synthesis_weight:
        # Masks of both frames (f_A), motion features (f_M), segment flows (eq. 4-6).
        out = model(frame1, frame2)
        # Rebuild each frame by warping the other with its segment flow (eq. 7, 8).
        loss, terms = view_synthesis_loss(frame1, frame2, out, loss_cfg)
        loss = loss_cfg.view_synthesis_weight * loss
    else:  # the flow fit alone needs only f_A's masks
        out = appearance_output(model, frame1, frame2)
        loss, terms = frames.new_zeros(()), {}
    if loss_cfg.uses_classical_flow and flows is None:
        raise ConfigError("loss.flow_fit_weight and loss.motion_mask_weight need the pairs' classical flow; "
                          "the data gave none")
    if loss_cfg.flow_fit_weight:
        # Each frame's masks split its own flow into per-segment motions (objectives/flow_fit.py).
        fit = (flow_fit_loss(flows[:, 0], out.masks1, loss_cfg.flow_fit_model)
               + flow_fit_loss(flows[:, 1], out.masks2, loss_cfg.flow_fit_model)) / 2
        loss = loss + loss_cfg.flow_fit_weight * fit
        terms["flow_fit"] = fit.detach()
    if loss_cfg.motion_mask_weight:
        # The objectness channel learns each frame's motion mask (objectives/motion_masks.py).
        channel = loss_cfg.motion_mask_channel
        bce = (motion_mask_loss(flows[:, 0], out.masks1, channel)
               + motion_mask_loss(flows[:, 1], out.masks2, channel)) / 2
        loss = loss + loss_cfg.motion_mask_weight * bce
        terms["motion_mask"] = bce.detach()
    if loss_cfg.distill_weight:
        if teachers is None:
            raise ConfigError("loss.distill_weight needs the teachers of loss.distill_from; none were given")
        # The objectness channel learns the teachers' mean objectness map (objectives/distillation.py).
        channel, size = loss_cfg.distill_channel, out.masks1.shape[-2:]
        if loss_cfg.paste_weight:  # the maps at the frames' size, for the pasted objects' alpha
            full = teachers.objectness(torch.cat([frame1, frame2]), frame1.shape[-2:])
            target1, target2 = F.interpolate(full[:, None], size=tuple(size), mode="area")[:, 0].chunk(2)
        else:
            target1, target2 = teachers.objectness(torch.cat([frame1, frame2]), size).chunk(2)  # (B, h, w) each
        target1, target2 = sharpened(target1, loss_cfg.distill_gain), sharpened(target2, loss_cfg.distill_gain)
        bce = (distillation_loss(target1, out.masks1, channel) + distillation_loss(target2, out.masks2, channel)) / 2
        loss = loss + loss_cfg.distill_weight * bce
        terms["distill"] = bce.detach()
        if loss_cfg.paste_weight:
            # The objects of the first frames, pasted onto each other's (objectives/distillation.py).
            if distributed.world_size() > 1:
                raise ConfigError("loss.paste_weight runs in one process only")
            composites, target = paste_objects(frame1, full[:frame1.shape[0]], loss_cfg.paste_scale_range)
            masks = distributed.unwrap(model).appearance(composites)
            target = F.interpolate(target[:, None], size=tuple(masks.shape[-2:]), mode="area")[:, 0]
            pasted = distillation_loss(target, masks, channel)
            loss = loss + loss_cfg.paste_weight * pasted
            terms["paste"] = pasted.detach()
    if loss_cfg.image_weight:
        if images is None:
            raise ConfigError("loss.image_weight needs still images (data.images); the data gave none")
        if distributed.world_size() > 1:
            raise ConfigError("loss.image_weight runs in one process only")
        # The objectness channel learns each still image's target map (training/image_targets.py).
        masks = distributed.unwrap(model).appearance(images["images"])  # (Bi, c, h, w)
        target = F.interpolate(images["targets"][:, None], size=tuple(masks.shape[-2:]), mode="area")[:, 0]
        weight = confidence(target) if loss_cfg.image_confidence else None  # of the target before sharpening
        still = distillation_loss(sharpened(target, loss_cfg.distill_gain), masks, loss_cfg.distill_channel, weight)
        loss = loss + loss_cfg.image_weight * still
        terms["image"] = still.detach()
        if loss_cfg.image_paste_weight or loss_cfg.image_motion_weight:
            loss = loss + pasted_still_images(model, images, loss_cfg, terms)
    return loss, terms, out


def pasted_still_images(model, images: dict, loss_cfg, terms: dict) -> torch.Tensor:
    """The still images' objects pasted onto each other (objectives/distillation.py): the objectness
    channel learns each composite's map (``loss.image_paste_weight``), and its masks fit the
    composite's known flow, the pasted object moving against its new background
    (``loss.image_motion_weight``; objectives/pasted_motion.py). Adds each term to ``terms``."""
    composites, alpha, target = pasted_layers(images["images"], images["targets"], loss_cfg.paste_scale_range)
    masks = distributed.unwrap(model).appearance(composites)  # (Bi, c, h, w)
    loss = composites.new_zeros(())
    if loss_cfg.image_paste_weight:
        target = F.interpolate(target[:, None], size=tuple(masks.shape[-2:]), mode="area")[:, 0]
        pasted = distillation_loss(sharpened(target, loss_cfg.distill_gain), masks, loss_cfg.distill_channel)
        loss = loss + loss_cfg.image_paste_weight * pasted
        terms["image_paste"] = pasted.detach()
    if loss_cfg.image_motion_weight:
        flow = pasted_motion_flow(alpha)[0]  # on the composites' device
        fit = flow_fit_loss(flow, masks, loss_cfg.flow_fit_model)
        loss = loss + loss_cfg.image_motion_weight * fit
        terms["image_motion"] = fit.detach()
    return loss


def sharpened(target: torch.Tensor, gain: float) -> torch.Tensor:
    """A soft target map pushed away from 0.5: 0.5 + gain x (target - 0.5), clipped to 0..1 (``loss.distill_gain``)."""
    return target if gain == 1 else (0.5 + gain * (target - 0.5)).clamp(0, 1)


def taught_channel(loss_cfg):
    """The channel the objective makes the objectness channel (``loss.distill_channel``,
    ``loss.motion_mask_channel``), or None."""
    if loss_cfg.distill_weight or loss_cfg.image_weight:
        return loss_cfg.distill_channel
    return loss_cfg.motion_mask_channel if loss_cfg.motion_mask_weight else None


def appearance_output(model, frame1: torch.Tensor, frame2: torch.Tensor) -> AMDOutput:
    """The masks of both frames from f_A alone, as an AMDOutput without flows."""
    if distributed.world_size() > 1:
        raise ConfigError("loss.view_synthesis_weight=0 (f_A alone) runs in one process only")
    masks = distributed.unwrap(model).appearance(torch.cat([frame1, frame2]))  # (2B, c, h, w)
    b = frame1.shape[0]
    empty = {field.name: None for field in dataclasses.fields(AMDOutput)}
    return AMDOutput(**{**empty, "masks1": masks[:b], "masks2": masks[b:], "flows12": [], "flows21": []})


def optimisation_step(model, optimizer, frames, cfg: Config, precision: str, flows=None, teachers=None,
                      images=None) -> tuple:
    """One step of the objective on (B, 2, 3, H, W) frames (and their classical flows, if the
    loss fits them; the teachers, if it distils; still images, if it learns them): forward (bf16 autocast for ``precision`` bf16), backward,
    optional gradient clipping, Adam. Returns (loss, terms, out) of training_step."""
    with autocast(frames.device, precision):
        loss, terms, out = training_step(model, frames, cfg.loss, flows, teachers, images)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.train.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
    optimizer.step()
    return loss, terms, out


def make_optimizer(model, train_cfg):
    """Adam with weight decay and poly decay from train.lr to train.min_lr over train.steps."""
    optimizer = torch.optim.Adam(_parameter_groups(model, train_cfg), lr=train_cfg.lr,
                                 weight_decay=train_cfg.weight_decay, foreach=True)
    return optimizer, poly_schedule(optimizer, train_cfg)


def _parameter_groups(model, train_cfg) -> list:
    """One group at train.lr; with train.appearance_lr, f_A's parameters in a second group at that lr."""
    if train_cfg.appearance_lr is None or train_cfg.appearance_lr == train_cfg.lr:
        return [{"params": list(model.parameters())}]
    appearance, rest = [], []
    for name, parameter in model.named_parameters():
        (appearance if name.removeprefix("module.").startswith("appearance.") else rest).append(parameter)
    return [{"params": rest}, {"params": appearance, "lr": train_cfg.appearance_lr}]
