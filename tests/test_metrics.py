import numpy as np
import pytest
import torch

from objectness.metrics import (
    CENTRE_PRIOR_SIGMA_FRAC,
    centre_prior,
    centre_prior_area,
    jaccard,
    sequence_mean,
)


def test_jaccard_of_two_pixel_masks_sharing_one_pixel_is_one_third():
    pred = np.array([[1, 1], [0, 0]], dtype=bool)
    gt = np.array([[1, 0], [1, 0]], dtype=bool)
    assert jaccard(pred, gt) == pytest.approx(1 / 3)


def test_jaccard_accepts_torch_tensors():
    pred = torch.tensor([[True, False], [False, False]])
    gt = torch.tensor([[True, True], [False, False]])
    assert jaccard(pred, gt) == pytest.approx(1 / 2)


def test_jaccard_of_two_empty_masks_is_one():
    empty = np.zeros((3, 4), dtype=bool)
    assert jaccard(empty, empty) == 1.0


def test_jaccard_of_empty_prediction_against_object_is_zero():
    gt = np.zeros((3, 4), dtype=bool)
    gt[1, 1] = True
    assert jaccard(np.zeros_like(gt), gt) == 0.0


def test_jaccard_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        jaccard(np.zeros((2, 2), dtype=bool), np.zeros((2, 3), dtype=bool))


def test_centre_prior_is_maximal_at_the_centre():
    prior = centre_prior(41, 61)
    assert np.unravel_index(prior.argmax(), prior.shape) == (20, 30)
    assert prior.max() == pytest.approx(1.0)
    assert prior.min() >= 0.0


def test_centre_prior_is_symmetric():
    prior = centre_prior(40, 64)
    np.testing.assert_allclose(prior, prior[::-1, :], atol=1e-7)
    np.testing.assert_allclose(prior, prior[:, ::-1], atol=1e-7)


def test_centre_prior_thresholded_area_is_about_a_quarter_of_the_image():
    prior = centre_prior(240, 427)
    area = (prior > 0.5).mean()
    assert area == pytest.approx(centre_prior_area(), abs=0.005)
    assert centre_prior_area(CENTRE_PRIOR_SIGMA_FRAC) == pytest.approx(0.25, abs=0.01)


def test_sequence_mean_weights_sequences_equally_not_frames():
    values = {"long": [1.0, 1.0, 1.0, 1.0], "short": [0.0]}
    assert sequence_mean(values) == pytest.approx(0.5)


def test_sequence_mean_rejects_a_sequence_without_values():
    with pytest.raises(ValueError, match="empty_seq"):
        sequence_mean({"a": [1.0], "empty_seq": []})
