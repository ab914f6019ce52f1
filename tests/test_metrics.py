import numpy as np
import pytest
import torch

from objectness.evaluation.metrics import (
    SaliencyScores,
    VideoScores,
    binarise,
    boundary_f,
    boundary_map,
    jaccard,
    region_statistics,
    sequence_mean,
)
from objectness.inference.centre_prior import (
    CENTRE_PRIOR_SIGMA_FRAC,
    centre_prior,
    centre_prior_area,
)


def square(size, top, left, side):
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


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


def test_jaccard_rejects_a_soft_map():
    with pytest.raises(ValueError, match="binarise"):
        jaccard(np.full((2, 2), 0.7), np.ones((2, 2), dtype=bool))


def test_binarise_keeps_pixels_strictly_above_one_half():
    soft = np.array([0.2, 0.5, 0.51, 1.0])
    np.testing.assert_array_equal(binarise(soft), [False, False, True, True])
    assert binarise(torch.tensor(soft)).tolist() == [False, False, True, True]


def test_a_relative_threshold_cuts_a_faint_map_at_half_its_maximum_and_a_confident_one_as_before():
    faint = np.array([0.1, 0.3, 0.45, 0.2])
    assert not binarise(faint).any()  # a fixed 0.5 finds nothing in a map whose maximum is 0.45
    # Half of 0.45 is 0.225: the two brightest pixels.
    np.testing.assert_array_equal(binarise(faint, relative=True), [False, True, True, False])
    assert binarise(torch.tensor(faint), relative=True).tolist() == [False, True, True, False]
    confident = np.array([0.1, 0.4, 0.6, 1.0])
    np.testing.assert_array_equal(binarise(confident, relative=True), binarise(confident))
    assert not binarise(np.zeros(4), relative=True).any()  # nothing above 0 in an all-zero map


def test_boundary_map_of_a_square_is_the_outer_top_left_and_inner_bottom_right_edges():
    # A pixel is boundary when it differs from its right, bottom or bottom-right neighbour.
    expected = np.array(
        [
            [1, 1, 1, 1, 0, 0],
            [1, 0, 0, 1, 0, 0],
            [1, 0, 0, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(boundary_map(square(6, 1, 1, 3)), expected)


def test_boundary_map_has_no_boundary_along_the_image_border():
    left_half = np.zeros((5, 8), dtype=bool)
    left_half[:, :4] = True
    expected = np.zeros_like(left_half)
    expected[:, 3] = True
    np.testing.assert_array_equal(boundary_map(left_half), expected)


def test_boundary_f_of_identical_masks_is_one():
    mask = square(100, 30, 30, 20)
    assert boundary_f(mask, mask) == 1.0


@pytest.mark.parametrize("shift", [(0, 1), (1, 1), (0, 2), (2, 0)])
def test_boundary_f_of_a_square_shifted_within_the_tolerance_is_one(shift):
    # 100 x 100 image: radius ceil(0.008 * 141.4) = 2 pixels, inclusive.
    gt = square(100, 30, 30, 20)
    assert boundary_f(np.roll(gt, shift, axis=(0, 1)), gt) == 1.0


def test_boundary_f_of_a_square_shifted_beyond_the_tolerance_is_hand_computed():
    # Side s = 20, shift d = 5 to the right, radius r = 2; each boundary has 4s = 80 pixels:
    # outer top row (s + 1), outer left column (s), inner right column (s), inner bottom row (s - 1).
    # Matched ground-truth pixels: top row s + 1 - (d - r) = 18, bottom row s - d + r = 17
    # (the shifted left column ends on it), left column 0, right column 2r + 1 = 5
    # (within r of the shifted top and bottom rows): 40 of 80. The prediction's count is
    # the same by the mirror argument, so P = R = 1/2 and F = 1/2.
    gt = square(100, 30, 30, 20)
    assert boundary_f(np.roll(gt, 5, axis=1), gt) == pytest.approx(0.5)


def test_boundary_f_tolerance_grows_with_the_image_diagonal():
    # 1000 x 1000 image: radius ceil(0.008 * 1414.2) = 12 pixels, so a 5-pixel shift matches.
    gt = square(1000, 300, 300, 200)
    assert boundary_f(np.roll(gt, 5, axis=1), gt) == 1.0


def test_boundary_f_of_two_empty_masks_is_one():
    empty = np.zeros((10, 10), dtype=bool)
    assert boundary_f(empty, empty) == 1.0


def test_boundary_f_against_an_empty_mask_is_zero():
    empty = np.zeros((10, 10), dtype=bool)
    assert boundary_f(empty, square(10, 2, 2, 4)) == 0.0
    assert boundary_f(square(10, 2, 2, 4), empty) == 0.0


def test_region_statistics_of_a_decaying_sequence():
    values = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    stats = region_statistics(values)
    assert stats["mean"] == pytest.approx(0.55)
    # recall counts frames strictly above 0.5: 0.9, 0.8, 0.7, 0.6 -> 4 of 8.
    assert stats["recall"] == pytest.approx(0.5)
    # DAVIS quarters of 8 frames: edges round(k * 7 / 4) = 0, 2, 4, 5, 7, both ends included:
    # first = frames 0..2 (mean 0.8), last = frames 5..7 (mean 0.3).
    assert stats["decay"] == pytest.approx(0.5)


def test_region_statistics_of_one_frame_has_no_decay():
    assert region_statistics([0.7]) == pytest.approx({"mean": 0.7, "recall": 1.0, "decay": 0.0})


def test_region_statistics_rejects_an_empty_sequence():
    with pytest.raises(ValueError, match="non-empty"):
        region_statistics([])


def video_scores_of_a_long_good_and_a_short_bad_sequence():
    scores = VideoScores()
    gt = square(20, 5, 5, 8)
    for _ in range(3):
        scores.add("long", gt, gt)
    scores.add("short", np.zeros_like(gt), gt)
    return scores


def test_video_scores_per_sequence_rows():
    rows = video_scores_of_a_long_good_and_a_short_bad_sequence().per_sequence()
    assert [(row["sequence"], row["frames"]) for row in rows] == [("long", 3), ("short", 1)]
    assert rows[0]["J_mean"] == rows[0]["F_mean"] == rows[0]["JF_mean"] == 1.0
    assert rows[1]["J_mean"] == rows[1]["F_mean"] == rows[1]["J_recall"] == 0.0


def test_video_scores_average_per_sequence_then_over_sequences_not_over_frames():
    summary = video_scores_of_a_long_good_and_a_short_bad_sequence().summary()
    # Over frames J would be 3/4; over sequences it is (1 + 0) / 2.
    assert summary["J_mean"] == summary["F_mean"] == summary["JF_mean"] == pytest.approx(0.5)
    assert summary["J_recall"] == pytest.approx(0.5)
    assert (summary["sequences"], summary["frames"]) == (2, 4)


def test_video_scores_summary_of_one_sequence_is_its_row():
    scores = VideoScores()
    gt = square(20, 5, 5, 8)
    for shift in range(4):
        scores.add("only", np.roll(gt, shift, axis=1), gt)
    (row,) = scores.per_sequence()
    summary = scores.summary()
    for key in VideoScores.STATISTICS:
        assert summary[key] == pytest.approx(row[key])


def test_video_scores_summary_without_frames_raises():
    with pytest.raises(ValueError, match="no frames"):
        VideoScores().summary()


# Saliency: 4 x 4 ground truth whose left two columns are the object (8 pixels).
SALIENCY_GT = np.zeros((4, 4), dtype=bool)
SALIENCY_GT[:, :2] = True


def test_saliency_mae_of_a_known_map():
    scores = SaliencyScores()
    scores.add(np.array([[1.0, 0.0], [0.6, 0.2]]), np.array([[1, 0], [1, 0]], dtype=bool))
    # |1 - 1| + |0 - 0| + |0.6 - 1| + |0.2 - 0| = 0.6 over 4 pixels.
    assert scores.summary()["mae"] == pytest.approx(0.15)


def test_saliency_maps_are_min_max_normalised_per_image():
    # uint8 200, 0, 120, 40 -> 1, 0, 0.6, 0.2 after normalisation: the MAE of the map above.
    scores = SaliencyScores()
    scores.add(np.array([[200, 0], [120, 40]], dtype=np.uint8), np.array([[255, 0], [255, 0]], dtype=np.uint8))
    assert scores.summary()["mae"] == pytest.approx(0.15)


def hand_saliency_map():
    pred = np.zeros((4, 4))
    pred[:2, :2] = 1.0  # 4 object pixels, sure
    pred[0, 3] = 1.0  # 1 background pixel, sure
    pred[2, :2] = pred[3, 0] = 0.6  # 3 object pixels, unsure; pred[3, 1] stays 0
    return pred


def test_saliency_adaptive_fbeta_of_a_hand_case():
    scores = SaliencyScores()
    scores.add(hand_saliency_map(), SALIENCY_GT)
    # Adaptive threshold = 2 x mean = 2 x (5 + 3 x 0.6) / 16 = 0.85 keeps the five 1.0 pixels:
    # TP = 4, FP = 1 -> P = 4/5, R = 4/8; F = 1.3 P R / (0.3 P + R) = 0.52 / 0.74 = 26/37.
    assert scores.summary()["fbeta_adaptive"] == pytest.approx(26 / 37)


def test_saliency_max_fbeta_is_the_best_threshold_and_at_least_the_mean():
    scores = SaliencyScores()
    scores.add(hand_saliency_map(), SALIENCY_GT)
    summary = scores.summary()
    # Best threshold 0.6 keeps TP = 7, FP = 1: P = R = 7/8.
    assert summary["fbeta_max"] == pytest.approx(7 / 8)
    assert summary["fbeta_max"] >= summary["fbeta_mean"]
    assert summary["e_measure_max"] >= summary["e_measure_mean"]


def test_saliency_of_a_perfect_prediction():
    gt = square(40, 10, 12, 15)
    scores = SaliencyScores()
    scores.add(gt.astype(np.float32), gt)
    summary = scores.summary()
    assert summary["fbeta_max"] == pytest.approx(1.0)
    assert summary["fbeta_adaptive"] == pytest.approx(1.0)
    assert summary["mae"] == 0.0
    assert summary["s_measure"] == pytest.approx(1.0)
    # PySODMetrics divides the E-measure by (pixels - 1), as the MATLAB code: 1600/1599 here.
    assert summary["e_measure_max"] == pytest.approx(1.0, abs=1e-3)


def test_saliency_averages_over_images_and_lists_each_image():
    scores = SaliencyScores()
    scores.add(torch.tensor(SALIENCY_GT, dtype=torch.float32), torch.tensor(SALIENCY_GT), name="perfect")
    scores.add(1.0 - SALIENCY_GT.astype(np.float32), SALIENCY_GT)
    rows = scores.per_image()
    assert [row["name"] for row in rows] == ["perfect", "1"]
    assert [row["mae"] for row in rows] == pytest.approx([0.0, 1.0])
    assert scores.summary()["images"] == 2
    assert scores.summary()["mae"] == pytest.approx(0.5)


def test_saliency_rejects_a_float_map_outside_zero_one():
    with pytest.raises(ValueError, match="0..1"):
        SaliencyScores().add(np.full((4, 4), 1.5), SALIENCY_GT)


def test_saliency_rejects_a_zero_one_uint8_ground_truth():
    with pytest.raises(ValueError, match="bool"):
        SaliencyScores().add(hand_saliency_map(), SALIENCY_GT.astype(np.uint8))


def test_saliency_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        SaliencyScores().add(np.zeros((4, 5)), SALIENCY_GT)
