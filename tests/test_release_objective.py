"""The `paper` objective equals the released code's (issue 13).

The reference below restates, in plain PyTorch and in the released code's
order of operations, the objective of the authors' release (PWC-Lite with
segment flow, ARFlow's unsupervised loss) as its source describes it:

- frames resized to the motion input (bilinear, align_corners=True), which is
  also where the loss compares images;
- at each level from the coarsest to 1/4: the previous level's composed flow,
  upsampled x2 (bilinear, align_corners=True, values x2), warps the second
  frame's features and enters the estimator; masks are resized to the level
  (bilinear, align_corners=True), one vector per mask is added to each
  segment's running sum, and the level's flow is composed from the sums;
- every level's flow upsampled x4 (values x4) gives the loss pyramid at 1,
  1/2, 1/4, ... of the motion input; the frames are area-resized to each;
- the non-occlusion mask is the forward splat of the reverse flow >= 0.2 at
  full resolution, nearest-resized to the other levels;
- per direction: (0.15 mean(|I - R| M) + 0.85 mean(SSIM distance of R M and
  I M over the valid 3 x 3 windows)) / mean(M); directions averaged, levels
  weighted.

The networks themselves (appearance net, feature pyramid, estimator, segment
head, cost volume) are shared with the model under test; the objective around
them is not.
"""
import pytest
import torch
import torch.nn.functional as F

from objectness.config import load_config
from objectness.model.amd import AMD
from objectness.model.correlation import correlation
from objectness.objectives.view_synthesis import view_synthesis_loss

CROP = (96, 96)
MOTION_INPUT = (128, 192)  # stretched in width, as the release's 384 x 384 -> 384 x 640
PRESET_OVERRIDES = [
    "model.appearance.depth=18", "model.appearance.width=8", "model.appearance.head_channels=16",
    f"model.motion.input_size=[{MOTION_INPUT[0]},{MOTION_INPUT[1]}]",
    "model.motion.pyramid_channels=[8,16,16,24,24,32]",  # 5 flow levels, as released; the coarsest unweighted
]


def bilinear(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def warp(image, flow):
    """image sampled at p + flow(p); coordinates normalised as the release does, border padding."""
    b, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij")
    x = 2 * (xs + flow[:, 0]) / (w - 1) - 1
    y = 2 * (ys + flow[:, 1]) / (h - 1) - 1
    return F.grid_sample(image, torch.stack([x, y], -1), mode="bilinear", padding_mode="border", align_corners=True)


def visible(flow_back, threshold=0.2):
    """1 where the pixels of the other frame, pushed along flow_back, leave at least ``threshold`` of weight."""
    b, _, h, w = flow_back.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow_back.dtype), torch.arange(w, dtype=flow_back.dtype), indexing="ij")
    x, y = (xs + flow_back[:, 0]).reshape(b, -1), (ys + flow_back[:, 1]).reshape(b, -1)
    hits = torch.zeros(b, h * w)
    for cx in (x.floor(), x.floor() + 1):
        for cy in (y.floor(), y.floor() + 1):
            weight = (1 - (x - cx).abs()) * (1 - (y - cy).abs())
            inside = (cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= h - 1)
            index = (cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)).long()
            hits.scatter_add_(1, index, torch.where(inside, weight, torch.zeros_like(weight)))
    return (hits.clamp(0, 1) >= threshold).float().view(b, 1, h, w)


def ssim_distance_valid(x, y):
    pool = lambda t: F.avg_pool2d(t, 3, 1)  # noqa: E731  no padding: valid windows only
    mu_x, mu_y = pool(x), pool(y)
    var_x, var_y, cov = pool(x * x) - mu_x**2, pool(y * y) - mu_y**2, pool(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim = (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ((1 - ssim) / 2).clamp(0, 1)


def photometric(image, reconstruction, mask):
    l1 = 0.15 * ((image - reconstruction).abs() * mask).mean()
    ssim = 0.85 * ssim_distance_valid(reconstruction * mask, image * mask).mean()
    return (l1 + ssim) / mask.mean()


def release_flows(motion, image1, image2, masks):
    """PWC-Lite with segment flow, one direction: flows that rebuild image1 by sampling image2, finest first."""
    pyramid1, pyramid2 = motion.pyramid(image1)[::-1], motion.pyramid(image2)[::-1]  # coarsest first
    flows = []
    for level, (x1, x2, reduce) in enumerate(zip(pyramid1, pyramid2, motion.reduce)):
        h, w = x1.shape[-2:]
        if level == 0:
            flow = torch.zeros(x1.shape[0], 2, h, w)
            sums = torch.zeros(masks.shape[0], masks.shape[1], 2)  # per segment, pixels of the level
        else:
            flow, sums = bilinear(flow * 2, (h, w)), sums * 2
            x2 = warp(x2, flow)
        cost = F.leaky_relu(correlation(x1, x2, motion.search_range), 0.1)
        features = motion.estimator(torch.cat([cost, reduce(x1), flow], 1))  # (B, 96, h, w)
        level_masks = bilinear(masks, (h, w))  # (B, c, h, w)
        pooled = (features[:, None] * level_masks[:, :, None]).sum((3, 4)) / level_masks.sum((2, 3))[..., None]
        sums = sums + motion.segment_head.mlp(pooled)  # (B, c, 2)
        flow = (sums[..., None, None] * level_masks[:, :, None]).sum(1)  # (B, 2, h, w)
        flows.append(flow)
    return [bilinear(f * 4, (4 * f.shape[-2], 4 * f.shape[-1])) for f in flows[::-1]]


def release_objective(model, frame1, frame2, level_weights):
    b = frame1.shape[0]
    masks = model.appearance(torch.cat([frame1, frame2]))
    masks1, masks2 = masks[:b], masks[b:]
    image1, image2 = bilinear(frame1, MOTION_INPUT), bilinear(frame2, MOTION_INPUT)
    flows12 = release_flows(model.motion, image1, image2, masks2)  # rebuilds frame 1 from frame 2: its masks
    flows21 = release_flows(model.motion, image2, image1, masks1)
    total = 0
    for level, (weight, flow12, flow21) in enumerate(zip(level_weights, flows12, flows21)):
        size = flow12.shape[-2:]
        scaled1, scaled2 = F.interpolate(image1, size, mode="area"), F.interpolate(image2, size, mode="area")
        if level == 0:
            full1, full2 = visible(flow21), visible(flow12)
        mask1, mask2 = F.interpolate(full1, size, mode="nearest"), F.interpolate(full2, size, mode="nearest")
        loss = (photometric(scaled1, warp(scaled2, flow12), mask1) + photometric(scaled2, warp(scaled1, flow21), mask2)) / 2
        total = total + weight * loss
    return total


def fixed_model_and_frames():
    torch.manual_seed(0)
    cfg = load_config("paper", PRESET_OVERRIDES)
    model = AMD(cfg.model).eval()  # eval: no dropout, batch-independent BatchNorm
    with torch.no_grad():
        model.appearance.head.classifier.weight.mul_(300)  # soft masks, far from uniform
        model.motion.segment_head.mlp[-1].weight.mul_(3)  # segment flows of a few pixels
        model.motion.segment_head.mlp[-1].bias.zero_()
    g = torch.Generator().manual_seed(1)
    scene = F.interpolate(torch.rand(2, 3, 27, 27, generator=g), size=(108, 108), mode="bilinear", align_corners=False)
    frame1, frame2 = scene[..., 4:100, 4:100], scene[..., 7:103, 2:98]
    return model, cfg, frame1, frame2


def loss_and_gradients(model, loss_fn):
    model.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_the_fixture_exercises_flow_occlusion_and_masks():
    model, cfg, frame1, frame2 = fixed_model_and_frames()
    with torch.no_grad():
        out = model(frame1, frame2)
    flow = out.motion_flows12[0]
    assert 1 < flow.abs().max() < 20, "segment flows of a few pixels"
    assert flow[:, 0].std() > 0.01, "the flow differs between segments"
    assert visible(out.motion_flows21[0]).mean() < 0.99, "some pixels occluded"


def test_paper_objective_and_gradients_equal_the_release_restated():
    model, cfg, frame1, frame2 = fixed_model_and_frames()
    assert (cfg.loss.grid, cfg.loss.occlusion, cfg.loss.ssim) == ("motion", "shared", "masked")
    ours, our_grads = loss_and_gradients(model, lambda: view_synthesis_loss(frame1, frame2, model(frame1, frame2), cfg.loss)[0])
    theirs, their_grads = loss_and_gradients(model, lambda: release_objective(model, frame1, frame2, cfg.loss.level_weights))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=0)
    assert our_grads.keys() == their_grads.keys()
    assert any(n.startswith("appearance.backbone") for n in our_grads) and any(n.startswith("motion.") for n in our_grads)
    for name in our_grads:
        scale = their_grads[name].abs().max().item()
        torch.testing.assert_close(our_grads[name], their_grads[name], rtol=1e-4, atol=1e-4 * scale, msg=name)


# model.motion.warp_flow barely moves this fixture's loss (its segment vectors
# nearly agree); tests/test_model.py pins what it changes.
@pytest.mark.parametrize("option", ["loss.grid=image", "loss.occlusion=per_level", "loss.ssim=padded",
                                    "model.motion.align_corners=false", "model.motion.mask_resize=area"])
def test_each_option_moves_the_objective_away_from_the_release(option):
    model, cfg, frame1, frame2 = fixed_model_and_frames()
    other = load_config("paper", PRESET_OVERRIDES + [option])
    variant = AMD(other.model).eval()
    variant.load_state_dict(model.state_dict())
    with torch.no_grad():
        theirs = release_objective(model, frame1, frame2, cfg.loss.level_weights)
        ours = view_synthesis_loss(frame1, frame2, variant(frame1, frame2), other.loss)[0]
    assert not torch.allclose(ours, theirs, rtol=1e-5, atol=0)
