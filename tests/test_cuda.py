"""CUDA against the CPU: the same model gives the same objective and gradients.

Skipped without a GPU. Run on one with `python -m pytest -q tests/test_cuda.py`.
"""
import copy

import pytest
import torch

from objectness.model.amd import AMD
from objectness.training.step import training_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _pairs(seed=0, batch=2, size=64):
    generator = torch.Generator().manual_seed(seed)
    frame = torch.rand(batch, 3, size + 4, size + 4, generator=generator)
    return torch.stack([frame[..., 2:-2, 2:-2], frame[..., 1:-3, 3:-1]], dim=1)  # a 1-pixel shift


def _loss_and_gradients(model, frames, cfg, amp=False):
    model.zero_grad(set_to_none=True)
    with torch.autocast(frames.device.type, dtype=torch.bfloat16, enabled=amp):
        loss, _, out = training_step(model, frames, cfg.loss)
    loss.backward()
    gradients = {name: p.grad.float().cpu() for name, p in model.named_parameters() if p.grad is not None}
    return loss.float().item(), out.masks1.float().cpu(), gradients


@pytest.fixture
def models(tiny_config):
    torch.manual_seed(0)
    cpu = AMD(tiny_config.model).eval()  # eval: no dropout, BatchNorm running statistics
    return tiny_config, cpu, copy.deepcopy(cpu).cuda()


def test_cuda_fp32_matches_the_cpu(models, monkeypatch):
    cfg, cpu, gpu = models
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    frames = _pairs()
    loss_cpu, masks_cpu, grads_cpu = _loss_and_gradients(cpu, frames, cfg)
    loss_gpu, masks_gpu, grads_gpu = _loss_and_gradients(gpu, frames.cuda(), cfg)
    assert loss_gpu == pytest.approx(loss_cpu, rel=1e-4)
    torch.testing.assert_close(masks_gpu, masks_cpu, atol=1e-4, rtol=1e-4)
    assert grads_gpu.keys() == grads_cpu.keys()
    for name in grads_cpu:
        torch.testing.assert_close(grads_gpu[name], grads_cpu[name], atol=1e-4, rtol=1e-2, msg=name)


def test_bf16_autocast_stays_close_to_fp32(models):
    cfg, _, gpu = models
    frames = _pairs(seed=1).cuda()
    loss_fp32, masks_fp32, grads_fp32 = _loss_and_gradients(gpu, frames, cfg)
    loss_bf16, masks_bf16, grads_bf16 = _loss_and_gradients(gpu, frames, cfg, amp=True)
    assert loss_bf16 == pytest.approx(loss_fp32, rel=0.03)
    assert (masks_bf16 - masks_fp32).abs().max() < 0.05
    for network in ("appearance", "motion"):  # f_A's gradient of a fresh model is small (~1e-7) but must keep its direction
        names = [name for name in grads_fp32 if name.startswith(network)]
        fp32 = torch.cat([grads_fp32[name].flatten() for name in names])
        bf16 = torch.cat([grads_bf16[name].flatten() for name in names])
        assert torch.isfinite(bf16).all(), network
        assert torch.nn.functional.cosine_similarity(bf16, fp32, dim=0) > 0.99, network
