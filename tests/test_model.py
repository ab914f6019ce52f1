"""The model of docs/method.md#the-model: shapes, the paper's equations, parameter counts."""
import pytest
import torch
import torch.nn.functional as F

from objectness.config import AppearanceConfig, load_config
from objectness.model.amd import AMD
from objectness.model.appearance import AppearanceNet
from objectness.model.correlation import correlation
from objectness.model.segment_flow import (
    SegmentFlowHead,
    compose,
    masked_average_pool,
    resize_masks,
)


def small_model_config(**extra):
    overrides = ["model.appearance.depth=18", "model.appearance.width=8", "model.motion.input_size=null",
                 "model.motion.pyramid_channels=[8,16,16,24,24]"]
    return load_config(None, overrides + [f"{k}={v}" for k, v in extra.items()]).model


def test_paper_parameter_counts_equal_the_released_model():
    model = AMD(load_config("paper").model)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model.appearance.backbone) == 23_508_032
    assert count(model.appearance.head) == 5_310_725
    assert count(model.appearance) == 28_818_757
    assert count(model.motion) == 1_721_714


@pytest.mark.parametrize("depth,stride", [(18, 8), (34, 16), (50, 8)])
def test_masks_are_a_softmax_at_the_output_stride(depth, stride):
    net = AppearanceNet(AppearanceConfig(depth=depth, width=8, output_stride=stride), num_segments=5).eval()
    masks = net(torch.rand(2, 3, 64, 96))
    assert masks.shape == (2, 5, 64 // stride, 96 // stride)
    assert torch.allclose(masks.sum(dim=1), torch.ones(2, 64 // stride, 96 // stride), atol=1e-5)
    assert (masks >= 0).all()


def naive_correlation(f1, f2, r):
    b, c, h, w = f1.shape
    out = torch.zeros(b, (2 * r + 1) ** 2, h, w)
    for y in range(h):
        for x in range(w):
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    if 0 <= y + dy < h and 0 <= x + dx < w:
                        k = (dy + r) * (2 * r + 1) + (dx + r)
                        out[:, k, y, x] = (f1[:, :, y, x] * f2[:, :, y + dy, x + dx]).mean(1)
    return out


def test_correlation_equals_the_naive_reference():
    torch.manual_seed(0)
    f1, f2 = torch.randn(2, 6, 7, 9), torch.randn(2, 6, 7, 9)
    assert torch.allclose(correlation(f1, f2, 3), naive_correlation(f1, f2, 3), atol=1e-6)


def test_correlation_peaks_at_the_true_displacement():
    f1 = torch.randn(1, 16, 20, 20)
    f2 = torch.roll(f1, shifts=(2, -1), dims=(2, 3))  # f2(p + (dx=-1, dy=2)) = f1(p)
    volume = correlation(f1, f2, 4)[0, :, 8:12, 8:12]
    assert (volume.mean(dim=(1, 2)).argmax() == (2 + 4) * 9 + (-1 + 4)).item()


def test_masked_average_pool_equals_a_direct_loop():
    torch.manual_seed(0)
    features, masks = torch.randn(2, 4, 5, 6), torch.rand(2, 3, 5, 6)
    pooled = masked_average_pool(features, masks, eps=0)
    for b in range(2):
        for m in range(3):
            expected = sum(features[b, :, y, x] * masks[b, m, y, x] for y in range(5) for x in range(6))
            expected = expected / masks[b, m].sum()
            assert torch.allclose(pooled[b, m], expected, atol=1e-5)


def test_composition_lays_each_segment_vector_on_its_mask():
    masks = torch.zeros(1, 2, 4, 4)
    masks[0, 0, :, :2] = 1  # left half: segment 0
    masks[0, 1, :, 2:] = 1
    segment_flow = torch.tensor([[[1.0, -2.0], [0.5, 3.0]]])  # (1, 2 segments, xy)
    flow = compose(segment_flow, masks)
    assert torch.equal(flow[0, :, :, :2], torch.tensor([1.0, -2.0]).view(2, 1, 1).expand(2, 4, 2))
    assert torch.equal(flow[0, :, :, 2:], torch.tensor([0.5, 3.0]).view(2, 1, 1).expand(2, 4, 2))
    soft = torch.full((1, 2, 1, 1), 0.5)
    assert torch.allclose(compose(segment_flow, soft)[0, :, 0, 0], torch.tensor([0.75, 0.5]))


@pytest.mark.parametrize("mode", ["area", "bilinear"])
def test_resized_masks_still_sum_to_one(mode):
    masks = torch.rand(1, 5, 12, 12).softmax(1)
    for size in [(3, 5), (24, 40), (12, 20)]:
        assert torch.allclose(resize_masks(masks, size, mode).sum(1), torch.ones(1, *size), atol=1e-5)


def test_forward_gives_flows_at_every_level_and_full_size_first():
    model = AMD(small_model_config())
    out = model(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    assert out.masks1.shape == out.masks2.shape == (2, 5, 8, 8)
    assert [f.shape[-1] for f in out.flows12] == [64, 8, 4, 2]
    assert [f.shape[-1] for f in out.motion_flows12] == [64, 32, 16, 8]  # 1, 1/2, 1/4, 1/8 of the motion input
    assert out.segment_flow12.shape == (2, 5, 2)


def test_motion_grid_follows_the_motion_input_size_and_its_resize():
    cfg = small_model_config(**{"model.motion.input_size": "[64,96]", "model.motion.align_corners": "false"})
    frame1, frame2 = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    out = AMD(cfg).eval()(frame1, frame2)
    expected = F.interpolate(frame1, size=(64, 96), mode="bilinear", align_corners=False)
    assert torch.equal(out.motion_frame1, expected)
    assert [tuple(f.shape[-2:]) for f in out.motion_flows21] == [(64, 96), (32, 48), (16, 24), (8, 12)]


@pytest.mark.parametrize("warp_flow", ["upsampled", "recomposed"])
def test_warp_flow_of_each_level(warp_flow, monkeypatch):
    import objectness.model.motion as motion_module

    torch.manual_seed(0)
    model = AMD(small_model_config(**{"model.motion.warp_flow": warp_flow})).eval()
    warps, real_warp = [], motion_module.backward_warp
    monkeypatch.setattr(motion_module, "backward_warp", lambda image, flow: warps.append(flow) or real_warp(image, flow))
    masks = (10 * torch.randn(1, 5, 8, 8)).softmax(1)  # nearly one-hot
    vectors = torch.tensor([[[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0], [0.0, -2.0], [1.0, 1.0]]])  # one residual per segment
    monkeypatch.setattr(model.motion.segment_head, "forward", lambda features, masks: vectors.expand(len(masks), -1, -1))
    with torch.no_grad():
        (segment_flows, flows), _ = model.motion(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), masks, masks)
    for level in range(1, len(flows)):
        h, w = flows[level].shape[-2:]
        upsampled = F.interpolate(flows[level - 1] * 2, scale_factor=2, mode="bilinear", align_corners=True)
        recomposed = compose(segment_flows[level - 1] * (w / 64), resize_masks(masks, (h, w), "bilinear"))
        torch.testing.assert_close(warps[level - 1][:1], upsampled if warp_flow == "upsampled" else recomposed)
    # Where the level is coarser than the masks (8 x 8 here), the two differ.
    h, w = flows[1].shape[-2:]
    upsampled = F.interpolate(flows[0] * 2, scale_factor=2, mode="bilinear", align_corners=True)
    difference = upsampled - compose(segment_flows[0] * (w / 64), resize_masks(masks, (h, w), "bilinear"))
    assert difference.abs().max() > 0.1


def test_motion_grid_loss_works_with_the_crop_as_motion_input_and_three_levels():
    from objectness.objectives.view_synthesis import view_synthesis_loss

    cfg = load_config(None, ["model.appearance.depth=18", "model.appearance.width=8", "model.motion.input_size=null",
                             "model.motion.pyramid_channels=[8,16,16,24]", "loss.level_weights=[1,1,1]"])
    model = AMD(cfg.model)
    frame1 = torch.rand(2, 3, 64, 64)
    frame2 = torch.roll(frame1, 2, dims=3)
    out = model(frame1, frame2)
    assert [f.shape[-1] for f in out.motion_flows12] == [64, 32, 16]  # 1, 1/2, 1/4 of the crop
    loss, terms = view_synthesis_loss(frame1, frame2, out, cfg.loss)
    loss.backward()
    assert torch.isfinite(loss) and set(terms) >= {"photometric_0", "photometric_2"}
    assert model.appearance.head.classifier.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("option", ["model.motion.mask_resize=nearest", "model.motion.warp_flow=dense"])
def test_unknown_motion_options_are_config_errors(option):
    from objectness.config import ConfigError

    key, value = option.split("=")
    with pytest.raises(ConfigError, match=key):
        AMD(small_model_config(**{key: value}))


def test_uniform_masks_give_a_single_flow_vector():
    """With one segment the composed flow is the same vector everywhere."""
    model = AMD(small_model_config(**{"model.num_segments": 1})).eval()
    out = model(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    flow = out.flows12[0]
    assert torch.allclose(flow, flow[:, :, :1, :1].expand_as(flow), atol=1e-5)


@pytest.mark.parametrize("source", ["sampled", "target"])
def test_mask_source_picks_whose_masks_carry_the_flow(source):
    model = AMD(small_model_config(**{"model.motion.mask_source": source})).eval()
    frame1, frame2 = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    out = model(frame1, frame2)
    masks = out.masks2 if source == "sampled" else out.masks1
    expected = compose(out.segment_flow12, resize_masks(masks, (64, 64), model.cfg.motion.mask_resize))
    assert torch.allclose(out.flows12[0], expected, atol=1e-5)


def test_kaiming_init_starts_the_segment_flow_at_zero():
    model = AMD(small_model_config(**{"model.motion.init": "kaiming"})).eval()
    out = model(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    assert out.segment_flow12.abs().max() == 0
    assert all(f.abs().max() == 0 for f in out.flows21)


def test_unknown_motion_init_is_a_config_error():
    from objectness.config import ConfigError
    with pytest.raises(ConfigError, match="model.motion.init"):
        AMD(small_model_config(**{"model.motion.init": "xavier"}))


def _gradients(model, frames, loss_cfg, bf16):
    from objectness.training.step import training_step

    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss, _, _ = training_step(model, frames, loss_cfg)
    loss.backward()
    return {name: p.grad.float().clone() for name, p in model.named_parameters() if p.grad is not None}


def test_bf16_autocast_keeps_the_appearance_gradient_of_a_fresh_model(tiny_config):
    # Fresh masks are nearly uniform: f_A's gradient is the small difference between
    # the segment flows of the masks, which a bf16 bottleneck turns into noise.
    torch.manual_seed(0)
    model = AMD(tiny_config.model).eval()
    frame = torch.rand(2, 3, 68, 68, generator=torch.Generator().manual_seed(0))
    frames = torch.stack([frame[..., 2:-2, 2:-2], frame[..., 1:-3, 3:-1]], dim=1)
    fp32 = _gradients(model, frames, tiny_config.loss, bf16=False)
    bf16 = _gradients(model, frames, tiny_config.loss, bf16=True)
    for network in ("appearance", "motion"):
        names = [name for name in fp32 if name.startswith(network)]
        a, b = (torch.cat([g[name].flatten() for name in names]) for g in (fp32, bf16))
        assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.95, network


def test_segment_flow_bottleneck_is_fp32_under_autocast():
    features, masks = torch.randn(1, 8, 4, 4), torch.rand(1, 3, 4, 4)
    head = SegmentFlowHead(in_channels=8, hidden=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert head(features, masks).dtype == torch.float32
        assert compose(torch.randn(1, 3, 2), masks.bfloat16()).dtype == torch.float32
