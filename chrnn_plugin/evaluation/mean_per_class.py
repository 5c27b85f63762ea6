"""Mean per-class accuracy, the usual figure for MIT Indoor 67 and SUN397."""

from collections.abc import Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmpretrain.registry import METRICS

from chrnn_plugin._checks import check_bool, check_choice


def _to_labels(value) -> np.ndarray:
    return np.asarray(torch.as_tensor(value).cpu().reshape(-1).tolist(), dtype=np.int64)


@METRICS.register_module()
class MeanPerClassAccuracy(BaseMetric):
    """Top-1 accuracy of each class, averaged over the classes.

    .. math::

        \\text{mean per-class accuracy} = \\frac{1}{|C|} \\sum_{c \\in C}
        \\frac{|\\{i : y_i = c,\\ \\hat y_i = c\\}|}{|\\{i : y_i = c\\}|}

    where :math:`C` is the set of classes that occur in the ground truth (a
    class without any evaluation image has no accuracy and is left out) and
    :math:`\\hat y_i` is the top-1 prediction. Reported in percent, as
    ``accuracy/mean_per_class`` (with the default prefix).

    When every class occurs in the ground truth this equals the macro-averaged
    recall of MMPretrain's ``SingleLabelMetric(items=('recall',),
    average='macro')``; that one counts a class with no ground truth as 0, so
    on a subset it is lower, and this metric is the one to report.

    Args:
        classwise (bool): Also return ``per_class``, the accuracy of every
            class (``nan`` for a class without images), ordered by label.
            Defaults to False.
        collect_device (str): ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): Defaults to ``'accuracy'``.
    """

    default_prefix = 'accuracy'

    def __init__(self, classwise: bool = False, collect_device: str = 'cpu', prefix=None):
        owner = type(self).__name__
        check_choice(owner, 'collect_device', collect_device, ('cpu', 'gpu'))
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.classwise = check_bool(owner, 'classwise', classwise)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if 'pred_score' in sample:
                score = torch.as_tensor(sample['pred_score'])
                pred = int(score.argmax())
                num_classes = int(score.numel())
            else:
                pred = int(_to_labels(sample['pred_label'])[0])
                num_classes = sample.get('num_classes')
            gt = _to_labels(sample['gt_label'])
            if gt.size != 1:
                raise ValueError(
                    f'MeanPerClassAccuracy expects one ground-truth label per sample, '
                    f'got {gt.tolist()}'
                )
            self.results.append(dict(pred=pred, gt=int(gt[0]), num_classes=num_classes))

    @staticmethod
    def calculate(pred, target, num_classes: int | None = None) -> tuple[float, np.ndarray]:
        """Mean per-class accuracy (percent) and the per-class accuracies.

        Args:
            pred: Predicted labels, shape ``(N,)``, or scores, shape ``(N, K)``.
            target: Ground-truth labels, shape ``(N,)``.
            num_classes (int, optional): Length of the per-class array (at
                least the largest label seen plus one). Defaults to ``K``.

        Returns:
            tuple: ``(mean, per_class)``; ``per_class[c]`` is ``nan`` when
            class ``c`` has no ground truth.
        """
        pred = torch.as_tensor(pred)
        if pred.ndim == 2:
            num_classes = num_classes or pred.shape[1]
            pred = pred.argmax(dim=1)
        pred = _to_labels(pred)
        target = _to_labels(target)
        if pred.shape != target.shape:
            raise ValueError(
                f'MeanPerClassAccuracy: {pred.size} predictions but {target.size} labels'
            )
        if target.size == 0:
            raise ValueError('MeanPerClassAccuracy: no samples to evaluate')
        if target.min() < 0 or pred.min() < 0:
            raise ValueError('MeanPerClassAccuracy: labels must be non-negative')
        num_classes = max(num_classes or 0, int(target.max()) + 1, int(pred.max()) + 1)
        total = np.bincount(target, minlength=num_classes).astype(np.float64)
        correct = np.bincount(target[pred == target], minlength=num_classes).astype(np.float64)
        with np.errstate(invalid='ignore', divide='ignore'):
            per_class = np.where(total > 0, correct / total * 100.0, np.nan)
        return float(np.nanmean(per_class)), per_class

    def compute_metrics(self, results: list) -> dict:
        pred = [r['pred'] for r in results]
        gt = [r['gt'] for r in results]
        sizes = [r['num_classes'] for r in results if r['num_classes'] is not None]
        num_classes = max(sizes) if sizes else None
        mean, per_class = self.calculate(pred, gt, num_classes)
        metrics = {'mean_per_class': mean}
        if self.classwise:
            metrics['per_class'] = per_class.tolist()
        return metrics
