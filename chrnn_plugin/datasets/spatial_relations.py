"""SpatialRelations: a synthetic task that global average pooling cannot solve.

Every image holds a red object A, a blue object B and one to three
distractors of other colours, on a greyish noisy background. Each object has a
random shape, size, texture (stripes, checks, dots) and shade. The label is
where A lies relative to B: ``above``, ``below``, ``left_of`` or
``right_of`` (chance: 25 %).

Why GAP fails by construction, for a backbone whose cells see ``R`` px and
whose border cells see at most ``margin`` px into the image:

* A and B are at least ``min_gap >= R`` px apart along the relation's axis,
  so no backbone cell sees both; each cell's feature depends on one of them
  (or on neither), never on their arrangement;
* no object comes closer than ``margin`` px to the image border, so no cell
  sees an object and the zero padding together: a cell cannot tell where in
  the image its object is;
* the pair is placed at random over the image, so absolute position carries
  no label.

GAP followed by a linear head is a sum over cells of per-cell terms, each a
function of one local patch, and the distribution of local patches is the
same for every class: it stays near chance, however long it trains. A neck
that relates regions (HSRN, HLSTM) can compare where A and where B are.

The defaults fit the demo backbone (``configs/demo``: ConvMixer with 4x4
patches and one 3x3 depthwise layer: receptive field 12 px, stride 4; border
cells see 8 px into the image).

Images are generated in memory from ``(seed, split, index)``: no files, no
downloads, the same images for the same seed, disjoint seed streams for the
train, val and test splits.
"""

from collections.abc import Sequence

import numpy as np
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from chrnn_plugin._checks import check_choice, check_positive_int

CLASSES = ('above', 'below', 'left_of', 'right_of')
SPLITS = {'train': 0, 'val': 1, 'test': 2}
# Mixed into every sample's seed so the task's stream differs from other
# users of ``numpy.random.SeedSequence((seed, ...))``.
_STREAM_TAG = 0x5E1A7

# Hue of A (red) and B (blue); see _object_colours.
ROLE_HUES = {'A': 0.0, 'B': 0.66}
TEXTURES = ('hstripes', 'vstripes', 'checker', 'diag_down', 'diag_up', 'dots')
SHAPES = ('box', 'disc', 'diamond')
#: What the label is: A's place relative to B (the default), A's shape alone
#: (content, which global pooling can learn), or both (content and arrangement).
TASK_CLASSES = {
    'relation': CLASSES,
    'shape': SHAPES,
    'shape_relation': tuple(f'{shape}_{rel}' for shape in SHAPES for rel in CLASSES),
}

# Generated splits by (seed, split, num_samples, settings): training several
# models in one process (tools/demo.py) generates each split once.
_CACHE: dict[tuple, list[dict]] = {}
_CACHE_SIZE = 8


def _texture(name: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean pattern of a texture, with random stripe width and phase."""
    yy, xx = np.mgrid[0:height, 0:width]
    # Stripe width 1 or 2 px: small enough that the pattern is visible on
    # a 6 px object, varied so the network learns the texture, not one
    # exact pixel pattern.
    t = int(rng.integers(1, 3))
    yy = yy + int(rng.integers(0, 2 * t))
    xx = xx + int(rng.integers(0, 2 * t))
    if name == 'hstripes':
        return (yy // t) % 2 == 0
    if name == 'vstripes':
        return (xx // t) % 2 == 0
    if name == 'checker':
        return ((yy // t) + (xx // t)) % 2 == 0
    if name == 'diag_down':
        return ((yy + xx) // t) % 2 == 0
    if name == 'diag_up':
        return ((yy - xx) // t) % 2 == 0
    if name == 'dots':
        return ((yy // t) % 2 == 0) & ((xx // t) % 2 == 0)
    raise ValueError(f'unknown texture {name!r}')


def _shape(name: str, height: int, width: int) -> np.ndarray:
    """Boolean mask of a shape filling a ``height x width`` box."""
    yy, xx = np.mgrid[0:height, 0:width]
    # Normalised coordinates in [-1, 1] at pixel centres.
    u = (2 * yy + 1) / height - 1
    v = (2 * xx + 1) / width - 1
    if name == 'box':
        return np.ones((height, width), dtype=bool)
    if name == 'disc':
        return u * u + v * v <= 1.0
    if name == 'diamond':
        return np.abs(u) + np.abs(v) <= 1.0 + 1.0 / min(height, width)
    raise ValueError(f'unknown shape {name!r}')


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (all in [0, 1], hue wrapping) as RGB in [0, 1]."""
    h = (h % 1.0) * 6.0
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    rgb = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    return np.array(rgb) + (v - c)


def _object_colours(role: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The two colours of an object's texture: a saturated hue and a dark shade of it.

    A is red, B is blue (hue jittered by +-0.03); distractors take any
    saturated hue at least 0.12 (43 degrees) away from both, so colour tells
    A, B and distractors apart, while shade, texture and shape vary.
    """
    if role == 'distractor':
        hue = float(rng.choice([rng.uniform(0.12, 0.54), rng.uniform(0.78, 0.88)]))
    else:
        hue = ROLE_HUES[role] + float(rng.uniform(-0.03, 0.03))
    sat = float(rng.uniform(0.75, 1.0))
    val = float(rng.uniform(0.75, 1.0))
    light = _hsv_to_rgb(hue, sat, val)
    return light, light * float(rng.uniform(0.2, 0.45))


def _gap(a: Sequence[int], b: Sequence[int]) -> int:
    """Chebyshev gap between boxes ``(y, x, h, w)``: empty rows/columns between them.

    Negative when they overlap on both axes.
    """
    gy = max(b[0] - (a[0] + a[2]), a[0] - (b[0] + b[2]))
    gx = max(b[1] - (a[1] + a[3]), a[1] - (b[1] + b[3]))
    return max(gy, gx)


def _place_pair(
    rng: np.random.Generator,
    label: int,
    sizes: np.ndarray,
    lo: int,
    hi: int,
    min_gap: int,
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """Boxes ``(y, x, h, w)`` of A and B in ``[lo, hi)^2`` realising ``label``.

    Along the relation's axis the two are ``>= min_gap`` px apart; across it
    their centres are offset by at most half the along-axis centre distance,
    so the relation is unambiguous.
    """
    (ha, wa), (hb, wb) = sizes
    vertical = CLASSES[label] in ('above', 'below')
    a_first = CLASSES[label] in ('above', 'left_of')  # A has the smaller coordinate
    # Work in (along, across) coordinates, then map back.
    la, ca = (ha, wa) if vertical else (wa, ha)
    lb, cb = (hb, wb) if vertical else (wb, hb)
    l1, l2 = (la, lb) if a_first else (lb, la)
    span = hi - lo
    while True:
        gap = int(rng.integers(min_gap, span - l1 - l2 + 1))
        p1 = int(rng.integers(lo, hi - (l1 + gap + l2) + 1))
        p2 = p1 + l1 + gap
        qa = int(rng.integers(lo, hi - ca + 1))
        qb = int(rng.integers(lo, hi - cb + 1))
        along = (p2 + l2 / 2) - (p1 + l1 / 2)
        if abs((qa + ca / 2) - (qb + cb / 2)) <= along / 2:
            break
    pa, pb = (p1, p2) if a_first else (p2, p1)
    if vertical:
        return (pa, qa, ha, wa), (pb, qb, hb, wb)
    return (qa, pa, ha, wa), (qb, pb, hb, wb)


def generate_sample(
    rng: np.random.Generator,
    img_size: int = 56,
    margin: int = 8,
    min_gap: int = 12,
    object_size: tuple[int, int] = (6, 9),
    num_distractors: tuple[int, int] = (1, 3),
    noise_std: float = 0.04,
    label: int | None = None,
) -> tuple[np.ndarray, int, list[dict]]:
    """Draw one image of the task.

    Args:
        rng (numpy.random.Generator): the only source of randomness.
        img_size (int): side of the square image in px.
        margin (int): no object pixel closer than this to the border.
        min_gap (int): least distance in px between A and B along the axis
            of their relation; at least the backbone's receptive field.
        object_size (tuple[int, int]): inclusive range of object heights and
            widths in px.
        num_distractors (tuple[int, int]): inclusive range of distractors
            to place (fewer when they do not fit).
        noise_std (float): std of the Gaussian pixel noise, in [0, 1] units.
        label (int, optional): the class to draw; random when None.

    Returns:
        tuple: ``(img, label, objects)``; ``img`` is ``(img_size, img_size,
        3)`` uint8 in BGR order (as ``mmcv.imread`` returns), ``objects``
        one dict per object with ``role`` ('A', 'B' or 'distractor'),
        ``texture``, ``shape`` and ``box`` ``(y, x, h, w)``.
    """
    lo, hi = margin, img_size - margin
    smin, smax = object_size
    if hi - lo < 2 * smax + min_gap:
        raise ValueError(
            f'SpatialRelations: img_size={img_size} leaves {hi - lo} px inside the margin '
            f'({margin} px), but two objects of up to {smax} px with a gap of {min_gap} px '
            f'need {2 * smax + min_gap} px'
        )
    if label is None:
        label = int(rng.integers(len(CLASSES)))
    sizes = rng.integers(smin, smax + 1, size=(2, 2))
    box_a, box_b = _place_pair(rng, label, sizes, lo, hi, min_gap)
    objects = [dict(role='A', box=box_a), dict(role='B', box=box_b)]
    wanted = int(rng.integers(num_distractors[0], num_distractors[1] + 1))
    for _ in range(wanted):
        # Rejection sampling; a distractor that does not fit is dropped.
        for _attempt in range(20):
            h, w = (int(s) for s in rng.integers(smin, smax + 1, size=2))
            box = (int(rng.integers(lo, hi - h + 1)), int(rng.integers(lo, hi - w + 1)), h, w)
            # 2 px clearance keeps objects visibly separate.
            if all(_gap(box, o['box']) >= 2 for o in objects):
                objects.append(dict(role='distractor', box=box))
                break

    # Greyish background (saturation <= 0.3): never mistaken for an object.
    background = _hsv_to_rgb(
        float(rng.uniform()), float(rng.uniform(0.0, 0.3)), float(rng.uniform(0.3, 0.9))
    )
    img = np.broadcast_to(background, (img_size, img_size, 3)).copy()
    for obj in objects:
        y, x, h, w = obj['box']
        obj['texture'] = TEXTURES[int(rng.integers(len(TEXTURES)))]
        obj['shape'] = SHAPES[int(rng.integers(len(SHAPES)))]
        mask = _shape(obj['shape'], h, w)
        pattern = _texture(obj['texture'], h, w, rng)
        light, dark = _object_colours(obj['role'], rng)
        patch = np.where(pattern[..., None], light, dark)
        region = img[y : y + h, x : x + w]
        region[mask] = patch[mask]
    img += rng.normal(0.0, noise_std, size=img.shape)
    img = (np.clip(img, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(img[..., ::-1]), label, objects


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of ``split``: a function of the three only.

    Different ``(seed, split, index)`` tuples give independent streams, so
    splits never share a seed.
    """
    return np.random.default_rng(np.random.SeedSequence((_STREAM_TAG, seed, SPLITS[split], index)))


@DATASETS.register_module()
class SpatialRelations(BaseDataset):
    """Synthetic images whose class is the spatial relation of two textured objects.

    See the module docstring for the task and why global average pooling
    cannot solve it. Works with the stock pipeline: samples carry ``img``
    (uint8, BGR, like ``LoadImageFromFile`` output) and ``gt_label``, so
    ``pipeline=[dict(type='PackInputs')]`` is enough.

    Args:
        split (str): ``'train'``, ``'val'`` or ``'test'``; each split has its
            own seed stream.
        num_samples (int): images in the split.
        seed (int): the dataset seed; same seed and split, same images.
        img_size (int): side of the square images in px. Defaults to 56.
        margin (int): object-free border in px. Defaults to 8.
        min_gap (int): least A-B distance along the relation's axis in px.
            Defaults to 12.
        object_size (tuple[int, int]): inclusive range of object sides in
            px. Defaults to (6, 9).
        num_distractors (tuple[int, int]): inclusive range of distractors.
            Defaults to (1, 3).
        noise_std (float): Gaussian pixel noise std. Defaults to 0.04.
        balanced (bool): cycle through the relations (exactly balanced
            splits) instead of drawing each at random. Defaults to True.
        task (str): the label, a key of :data:`TASK_CLASSES`: ``'relation'``
            (where A lies relative to B), ``'shape'`` (A's shape: content
            alone, which global average pooling can learn) or
            ``'shape_relation'`` (both: ``shape * 4 + relation``, 12 classes).
            The images are the same for every task. Defaults to
            ``'relation'``.
        pipeline (Sequence): MMPretrain data pipeline.
        test_mode (bool): as for every MMEngine dataset.
        **kwargs: passed on to :class:`mmpretrain.datasets.BaseDataset`.
    """

    METAINFO = dict(classes=CLASSES)

    def __init__(
        self,
        split: str = 'train',
        num_samples: int = 1000,
        seed: int = 0,
        img_size: int = 56,
        margin: int = 8,
        min_gap: int = 12,
        object_size: Sequence[int] = (6, 9),
        num_distractors: Sequence[int] = (1, 3),
        noise_std: float = 0.04,
        balanced: bool = True,
        task: str = 'relation',
        pipeline: Sequence = (),
        test_mode: bool = False,
        **kwargs,
    ) -> None:
        check_choice('SpatialRelations', 'split', split, SPLITS)
        self.task = check_choice('SpatialRelations', 'task', task, TASK_CLASSES)
        if task != 'relation' and 'metainfo' not in kwargs:
            kwargs['metainfo'] = dict(classes=TASK_CLASSES[task])
        check_positive_int('SpatialRelations', 'num_samples', num_samples)
        self.split = split
        self.num_samples = num_samples
        self.seed = seed
        self.generator_cfg = dict(
            img_size=img_size,
            margin=margin,
            min_gap=min_gap,
            object_size=tuple(object_size),
            num_distractors=tuple(num_distractors),
            noise_std=noise_std,
        )
        self.balanced = balanced
        # No annotation file: ``ann_file=''`` and ``load_data_list`` generates.
        super().__init__(ann_file='', pipeline=pipeline, test_mode=test_mode, **kwargs)

    def load_data_list(self) -> list[dict]:
        """Generate every sample of the split (deterministic in seed, split, index)."""
        key = (
            self.seed,
            self.split,
            self.num_samples,
            self.balanced,
            self.task,
            tuple(sorted(self.generator_cfg.items())),
        )
        if key not in _CACHE:
            while len(_CACHE) >= _CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = self._generate()
        # BaseDataset copies (serialises) what it gets; the cache stays intact.
        return list(_CACHE[key])

    def _generate(self) -> list[dict]:
        data_list = []
        for index in range(self.num_samples):
            label = index % len(CLASSES) if self.balanced else None
            img, label, objects = generate_sample(
                sample_rng(self.seed, self.split, index), label=label, **self.generator_cfg
            )
            shape = SHAPES.index(objects[0]['shape'])  # objects[0] is A
            if self.task == 'shape':
                label = shape
            elif self.task == 'shape_relation':
                label = shape * len(CLASSES) + label
            data_list.append(
                dict(
                    img=img,
                    gt_label=label,
                    img_shape=img.shape[:2],
                    ori_shape=img.shape[:2],
                    objects=objects,
                )
            )
        return data_list

    def extra_repr(self) -> list[str]:
        """Lines for ``repr``: the split, seed and generator settings."""
        return [f'Split: \t{self.split}', f'Task: \t{self.task}', f'Seed: \t{self.seed}'] + [
            f'{k}: \t{v}' for k, v in self.generator_cfg.items()
        ]
