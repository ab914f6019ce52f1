"""Warping, occlusion and the view synthesis objective (docs/method.md#the-objective)."""
import pytest
import torch
import torch.nn.functional as F

from objectness.config import LossConfig, load_config
from objectness.model.amd import AMD
from objectness.model.warp import backward_warp, non_occlusion_mask, range_map
from objectness.objectives.view_synthesis import (
    photometric_distance,
    ssim_distance,
    view_synthesis_loss,
)


def smooth_image(h=32, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 4, w // 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)


def constant_flow(dx, dy, h=32, w=40):
    return torch.tensor([dx, dy], dtype=torch.float32).view(1, 2, 1, 1).expand(1, 2, h, w)


def test_zero_flow_warp_is_the_identity():
    image = torch.rand(2, 3, 17, 23)
    assert torch.allclose(backward_warp(image, torch.zeros(2, 2, 17, 23)), image, atol=1e-5)


def test_integer_shift_recovers_the_shifted_image():
    image = smooth_image()
    shifted = torch.roll(image, shifts=(2, 3), dims=(2, 3))  # shifted(p) = image(p - (3, 2))
    recovered = backward_warp(shifted, constant_flow(3, 2))  # image(p) = shifted(p + (3, 2))
    assert torch.allclose(recovered[..., :-2, :-3], image[..., :-2, :-3], atol=1e-5)


def test_subpixel_warp_interpolates_linearly():
    ramp = torch.arange(10.0).view(1, 1, 1, 10).expand(1, 1, 4, 10)
    warped = backward_warp(ramp, constant_flow(0.25, 0, 4, 10))
    assert torch.allclose(warped[..., :-1], ramp[..., :-1] + 0.25, atol=1e-5)


def test_ssim_distance_is_zero_for_equal_images_and_positive_otherwise():
    image = smooth_image()
    assert ssim_distance(image, image).abs().max() < 1e-5
    assert ssim_distance(image, smooth_image(seed=1)).mean() > 0.05


def test_photometric_distance_weights_l1_and_ssim():
    a, b = smooth_image(), smooth_image(seed=1)
    only_l1 = photometric_distance(a, b, LossConfig(l1_weight=1.0, ssim_weight=0.0))
    assert torch.allclose(only_l1, (a - b).abs().mean(1, keepdim=True))
    mixed = photometric_distance(a, b, LossConfig())
    expected = (0.15 * (a - b).abs() + 0.85 * ssim_distance(a, b)).mean(1, keepdim=True)
    assert torch.allclose(mixed, expected)


def test_range_map_is_one_under_zero_flow():
    assert torch.allclose(range_map(torch.zeros(1, 2, 8, 9)), torch.ones(1, 1, 8, 9))


def test_occlusion_is_detected_where_a_shift_uncovers_pixels():
    # Frame 2 is frame 1 moved 3 px right: the 3 leftmost columns of frame 2 are
    # new, and frame 1's 3 rightmost columns leave the view. The flow 2->1 is
    # (-3, 0): frame 2's pixels land 3 px to the left in frame 1, so nothing
    # lands on frame 1's rightmost columns.
    visible1 = non_occlusion_mask(constant_flow(-3, 0, 8, 12))
    assert visible1[..., :, -3:].sum() == 0
    assert visible1[..., :, :-3].min() == 1


@pytest.mark.parametrize("grid,ssim", [("motion", "masked"), ("image", "padded")])
def test_loss_is_lower_for_the_true_flow_than_for_zero_flow(grid, ssim):
    from types import SimpleNamespace
    frame1 = smooth_image(64, 64)
    frame2 = torch.roll(frame1, shifts=(0, 4), dims=(2, 3))  # content moves 4 px right
    def out_with(flow_x):
        f12, f21 = constant_flow(flow_x, 0, 64, 64), constant_flow(-flow_x, 0, 64, 64)
        return SimpleNamespace(flows12=[f12], flows21=[f21], motion_frame1=frame1, motion_frame2=frame2,
                               motion_flows12=[f12], motion_flows21=[f21])
    cfg = LossConfig(level_weights=(1.0,), grid=grid, ssim=ssim)
    true_loss, _ = view_synthesis_loss(frame1, frame2, out_with(4.0), cfg)
    zero_loss, _ = view_synthesis_loss(frame1, frame2, out_with(0.0), cfg)
    assert true_loss < 0.02 < zero_loss


def test_gradients_reach_both_networks():
    cfg = load_config(None, ["model.appearance.depth=18", "model.appearance.width=8",
                             "model.motion.input_size=null", "model.motion.pyramid_channels=[8,16,16,24,24]"])
    model = AMD(cfg.model)
    frame1 = smooth_image(64, 64)
    out = model(frame1, torch.roll(frame1, 2, dims=3))
    loss, terms = view_synthesis_loss(frame1, torch.roll(frame1, 2, dims=3), out, cfg.loss)
    loss.backward()
    for name, net in [("appearance", model.appearance), ("motion", model.motion)]:
        grads = [p.grad.abs().sum() for p in net.parameters() if p.grad is not None]
        assert grads and sum(grads) > 0, f"no gradient reached the {name} network"
    assert model.appearance.head.classifier.weight.grad.abs().sum() > 0
    assert set(terms) >= {"photometric_0", "photometric_3", "visible"}


def _plain_ssim_distance(x, y):
    """The textbook form: five separate 3x3 poolings (the reference for the fused one)."""
    x, y = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    var_x = F.avg_pool2d(x * x, 3, 1) - mu_x**2
    var_y = F.avg_pool2d(y * y, 3, 1) - mu_y**2
    cov = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ((1 - ssim) / 2).clamp(0, 1)


def _plain_backward_warp(image, flow):
    """grid_sample on a grid built with a scale tensor and a permute (the reference)."""
    _, _, h, w = flow.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij")
    coords = torch.stack([xs, ys])[None] + flow
    scale = torch.tensor([2 / (w - 1), 2 / (h - 1)]).view(1, 2, 1, 1)
    grid = (coords * scale - 1).permute(0, 2, 3, 1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def test_fused_ssim_equals_the_plain_form():
    torch.manual_seed(0)
    x, y = torch.rand(2, 3, 17, 23), torch.rand(2, 3, 17, 23)
    torch.testing.assert_close(ssim_distance(x, y), _plain_ssim_distance(x, y))


def test_backward_warp_equals_the_plain_form_under_random_flow():
    torch.manual_seed(0)
    image, flow = torch.rand(2, 3, 12, 20), 3 * torch.randn(2, 2, 12, 20)
    torch.testing.assert_close(backward_warp(image, flow), _plain_backward_warp(image, flow))


def test_unpadded_ssim_keeps_only_the_windows_inside_the_image():
    x, y = smooth_image(), smooth_image(seed=1)
    valid = ssim_distance(x, y, padding=False)
    assert valid.shape[-2:] == (30, 38)
    torch.testing.assert_close(valid, ssim_distance(x, y)[..., 1:-1, 1:-1])


@pytest.mark.parametrize("option", [{"grid": "crop"}, {"occlusion": "none"}, {"ssim": "gaussian"}])
def test_unknown_loss_options_are_config_errors(option):
    from types import SimpleNamespace

    from objectness.config import ConfigError
    flow = constant_flow(0, 0)
    out = SimpleNamespace(flows12=[flow], flows21=[flow])
    with pytest.raises(ConfigError, match=f"loss.{next(iter(option))}"):
        view_synthesis_loss(smooth_image(), smooth_image(), out, LossConfig(level_weights=(1.0,), **option))
