"""Semantic-segmentation scores on hand-computed confusion matrices."""
import math

import numpy as np
import pytest

from objectness.semantic.metrics import VOID, ConfusionMatrix

CLASSES = ["a", "b", "c"]


def scores(pairs, num_classes=3):
    matrix = ConfusionMatrix(num_classes)
    for prediction, truth in pairs:
        matrix.add(np.array(prediction), np.array(truth))
    return matrix.summary(CLASSES[:num_classes])


def test_a_perfect_prediction_scores_one_everywhere():
    truth = [[0, 1], [2, 2]]
    result = scores([(truth, truth)])
    assert result["mIoU"] == result["pixel_accuracy"] == result["mean_class_accuracy"] == 1.0


def test_iou_accuracy_and_pixel_accuracy_match_a_hand_computed_case():
    truth = [[0, 0, 0], [1, 1, 2]]
    prediction = [[0, 0, 1], [1, 2, 2]]
    # class 0: TP 2, FN 1, FP 0 -> IoU 2/3, acc 2/3; class 1: TP 1, FN 1, FP 1 -> IoU 1/3, acc 1/2;
    # class 2: TP 1, FN 0, FP 1 -> IoU 1/2, acc 1.
    result = scores([(prediction, truth)])
    ious = [row["IoU"] for row in result["per_class"]]
    assert ious == pytest.approx([2 / 3, 1 / 3, 1 / 2])
    assert result["mIoU"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)
    assert result["pixel_accuracy"] == pytest.approx(4 / 6)
    assert result["mean_class_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)


def test_void_pixels_are_not_scored_whatever_was_predicted_there():
    truth = [[0, VOID], [1, VOID]]
    prediction = [[0, 1], [1, 2]]
    result = scores([(prediction, truth)])
    assert result["labelled_pixels"] == 2
    assert result["pixel_accuracy"] == 1.0
    assert [row["IoU"] for row in result["per_class"]] == [1.0, 1.0, None]


def test_a_class_absent_from_truth_and_prediction_is_left_out_of_the_mean():
    truth = [[0, 0], [1, 1]]
    prediction = [[0, 1], [1, 1]]  # class 2 nowhere
    result = scores([(prediction, truth)])
    assert result["per_class"][2]["IoU"] is None and result["per_class"][2]["accuracy"] is None
    assert result["mIoU"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_a_class_absent_from_truth_but_predicted_scores_zero_iou():
    truth = [[0, 0], [1, 1]]
    prediction = [[0, 2], [1, 1]]
    result = scores([(prediction, truth)])
    assert result["per_class"][2]["IoU"] == 0.0
    assert result["per_class"][2]["accuracy"] is None  # no pixel of class 2 to be right about
    assert result["mIoU"] == pytest.approx((1 / 2 + 1 + 0) / 3)


def test_images_accumulate_into_one_matrix_not_a_mean_of_per_image_scores():
    big = (np.zeros((10, 10), int), np.zeros((10, 10), int))  # 100 pixels of class 0, all right
    small = ([[1]], [[0]])  # one pixel of class 0 predicted as 1
    result = scores([big, small], num_classes=2)
    assert result["pixel_accuracy"] == pytest.approx(100 / 101)
    assert result["per_class"][0]["IoU"] == pytest.approx(100 / 101)
    assert result["per_class"][1]["IoU"] == 0.0


def test_prediction_and_truth_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match="shape"):
        ConfusionMatrix(3).add(np.zeros((2, 2), int), np.zeros((2, 3), int))


def test_a_class_index_beyond_the_classes_is_refused():
    with pytest.raises(ValueError, match="0..2"):
        ConfusionMatrix(3).add(np.array([[3]]), np.array([[0]]))


def test_an_empty_matrix_has_no_scores():
    result = ConfusionMatrix(2).summary(["a", "b"])
    assert result["mIoU"] is None and math.isnan(ConfusionMatrix(2).pixel_accuracy())
