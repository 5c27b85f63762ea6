import math
import re

import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.registry import init_default_scope
from mmpretrain.evaluation import SingleLabelMetric
from mmpretrain.registry import METRICS
from mmpretrain.structures import DataSample

from chrnn_plugin.evaluation import MeanPerClassAccuracy

# Hand-computed example, 6 images, 3 classes:
#   class 0: 1 image,  1 right -> 100 %
#   class 1: 3 images, 1 right -> 33.33 %
#   class 2: 2 images, 2 right -> 100 %
# mean per-class accuracy = (100 + 100/3 + 100) / 3 = 77.78 %; overall top-1 = 4/6 = 66.67 %.
GT = [0, 1, 1, 1, 2, 2]
PRED = [0, 0, 1, 2, 2, 2]
MEAN = (100 + 100 / 3 + 100) / 3


def samples(num_classes):
    out = []
    for gt, pred in zip(GT, PRED):
        score = torch.full((num_classes,), 0.1)
        score[pred] = 0.9
        out.append(DataSample().set_gt_label(gt).set_pred_score(score))
    return out


def evaluate(metrics, num_classes):
    evaluator = Evaluator(metrics)
    evaluator.process(samples(num_classes))
    return evaluator.evaluate(len(GT))


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmpretrain')


def test_registered():
    assert METRICS.get('MeanPerClassAccuracy') is MeanPerClassAccuracy


def test_hand_computed_example():
    results = evaluate([dict(type='Accuracy', topk=(1,)), MeanPerClassAccuracy()], 3)
    assert results['accuracy/mean_per_class'] == pytest.approx(MEAN)
    assert results['accuracy/top1'] == pytest.approx(400 / 6, rel=1e-5)


def test_calculate_labels_and_scores():
    mean, per_class = MeanPerClassAccuracy.calculate(torch.tensor(PRED), torch.tensor(GT))
    assert mean == pytest.approx(MEAN)
    assert per_class.tolist() == pytest.approx([100, 100 / 3, 100])
    scores = torch.nn.functional.one_hot(torch.tensor(PRED), 5).float()
    mean, per_class = MeanPerClassAccuracy.calculate(scores, GT)
    assert mean == pytest.approx(MEAN)
    assert len(per_class) == 5 and math.isnan(per_class[3]) and math.isnan(per_class[4])


def test_classwise_and_absent_classes():
    # Class 3 has no image: it has no accuracy and does not lower the mean.
    results = evaluate([MeanPerClassAccuracy(classwise=True)], 4)
    assert results['accuracy/mean_per_class'] == pytest.approx(MEAN)
    per_class = results['accuracy/per_class']
    assert per_class[:3] == pytest.approx([100, 100 / 3, 100]) and math.isnan(per_class[3])


def test_relation_to_macro_recall():
    def recall():
        return SingleLabelMetric(items=('recall',), average='macro')

    # every class present: the same number
    results = evaluate([MeanPerClassAccuracy(), recall()], 3)
    assert results['single-label/recall'] == pytest.approx(MEAN, rel=1e-5)
    # a class without images: macro recall counts it as 0, which is not a per-class accuracy
    results = evaluate([MeanPerClassAccuracy(), recall()], 4)
    assert results['single-label/recall'] == pytest.approx(MEAN * 3 / 4, rel=1e-5)
    assert results['accuracy/mean_per_class'] == pytest.approx(MEAN)


def test_pred_labels_without_scores():
    metric = MeanPerClassAccuracy()
    metric.process(
        None, [DataSample().set_gt_label(g).set_pred_label(p).to_dict() for g, p in zip(GT, PRED)]
    )
    assert metric.evaluate(len(GT))['accuracy/mean_per_class'] == pytest.approx(MEAN)


def test_errors():
    with pytest.raises(ValueError, match='6 predictions but 5 labels'):
        MeanPerClassAccuracy.calculate(PRED, GT[:5])
    with pytest.raises(ValueError, match='no samples'):
        MeanPerClassAccuracy.calculate([], [])


@pytest.mark.parametrize(
    'kwargs, error, words',
    [
        (dict(classwise='yes'), TypeError, "classwise must be True or False, got 'yes'"),
        (dict(collect_device='cuda'), ValueError, "collect_device must be one of ('cpu', 'gpu')"),
    ],
)
def test_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=re.escape(f'MeanPerClassAccuracy: {words}')):
        MeanPerClassAccuracy(**kwargs)
