"""Image sizes at test time (docs/method.md#saliency): the shorter edge f_A sees, and the scales it is run at.

f_A's masks come out at 1/8 of its input, so every size is a multiple of 8.
"""
from ..config import Config

TEST_SCALE = 0.98  # test-time shorter edge = data.short_edge x 0.98: 392 for the paper's 400 (released code)


def inference_short_edge(cfg: Config) -> int:
    """The test-time shorter edge: the training resize x 0.98, a multiple of 8 (392 for the paper)."""
    return multiple_of_8(cfg.data.test_short_edge or cfg.data.short_edge * TEST_SCALE)


def inference_size(height: int, width: int, short_edge: int) -> tuple:
    """(H, W) with the shorter edge near ``short_edge``, the aspect kept, both multiples of 8."""
    scale = short_edge / min(height, width)
    return multiple_of_8(height * scale), multiple_of_8(width * scale)


def scaled_short_edges(short_edge: int, scales) -> list:
    """The shorter edge of each test scale (multi-scale testing), each a multiple of 8."""
    return [multiple_of_8(short_edge * scale) for scale in scales]


def multiple_of_8(pixels: float) -> int:
    """The nearest multiple of 8 (f_A's output stride), at least 8."""
    return max(8, round(pixels / 8) * 8)
