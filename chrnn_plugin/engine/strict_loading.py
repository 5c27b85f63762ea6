"""Load a checkpoint into a model and say exactly where the two differ: refused when strict.

MMEngine's runner loads ``load_from`` with ``strict=False``, and so does
MMPretrain's ``get_model(model, pretrained=PATH)`` (behind
``ImageClassificationInferencer`` and ``FeatureExtractor``): a checkpoint of
another model loads the weights whose names and shapes happen to match, logs
"size mismatch" and goes on, so ``tools/test.py`` printed chance accuracy with
exit status 0. MMEngine's ``strict=True`` raises on rank 0 only, which leaves
the other ranks of a distributed run waiting.

:func:`load_state_dict_checked` loads as MMEngine's ``load_state_dict`` does
(model wrappers and TTA models unwrapped; each module's own load hooks run
first, so a backbone that renames or resizes legacy weights is not reported),
records the missing and unexpected keys and the shape mismatches, and then
either raises :class:`CheckpointMismatchError` on every rank (``strict=True``)
or logs them (``strict=False``). :func:`load_checkpoint_checked` reads the file
through MMEngine's ``CheckpointLoader`` first (so the safe loader's policy
applies), and :func:`get_model` is MMPretrain's ``get_model`` loading
``pretrained`` that way. Nothing here patches MMEngine or MMPretrain:
``init_cfg=dict(type='Pretrained', ...)`` and the libraries' own loaders keep
their behaviour.
"""

import json
import logging
import re
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner.checkpoint import _load_checkpoint
from mmpretrain.apis import get_model as mmpretrain_get_model
from torch import nn
from torch.nn.modules.module import _IncompatibleKeys

__all__ = [
    'DEFAULT_REVISE_KEYS',
    'CheckpointMismatchError',
    'ShapeMismatch',
    'StateDictMismatch',
    'get_model',
    'load_checkpoint_checked',
    'load_checkpoint_into',
    'load_state_dict_checked',
]

# MMEngine's default: strip the prefix DataParallel and DDP add to every key.
DEFAULT_REVISE_KEYS = ((r'^module\.', ''),)
# How many of each kind of difference a message lists.
SHOWN = 5

# torch's message for a parameter of another shape (the same since torch 1.0).
_SIZE_MISMATCH = re.compile(
    r'size mismatch for (?P<key>\S+): copying a param with shape '
    r'torch\.Size\((?P<checkpoint>\[[\d, ]*\])\) from checkpoint, '
    r'the shape in current model is torch\.Size\((?P<model>\[[\d, ]*\])\)'
)


@dataclass(frozen=True)
class ShapeMismatch:
    """A key the checkpoint and the model both have, with tensors of different shapes."""

    key: str
    checkpoint_shape: tuple[int, ...]
    model_shape: tuple[int, ...]

    def __str__(self) -> str:
        checkpoint, model = list(self.checkpoint_shape), list(self.model_shape)
        return f'{self.key}: checkpoint {checkpoint}, model {model}'


@dataclass
class StateDictMismatch:
    """How a state dict differs from the model it was loaded into, in the model's order."""

    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    shape_mismatches: list[ShapeMismatch] = field(default_factory=list)
    other_errors: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.missing_keys or self.unexpected_keys or self.shape_mismatches or self.other_errors
        )

    def summary(self, limit: int = SHOWN) -> str:
        """One line per kind of difference: how many, and the first ``limit`` of them.

        Args:
            limit: How many differences of each kind to name.

        Returns:
            str: The lines, e.g. ``'  missing keys (7): a; b; c; d; e; ... (2 more)'``.
        """
        lines = []
        for title, items in (
            ('missing keys', self.missing_keys),
            ('unexpected keys', self.unexpected_keys),
            ('shape mismatches', [str(m) for m in self.shape_mismatches]),
            ('other errors', self.other_errors),
        ):
            if items:
                more = f'; ... ({len(items) - limit} more)' if len(items) > limit else ''
                lines.append(f'  {title} ({len(items)}): {"; ".join(items[:limit])}{more}')
        return '\n'.join(lines)


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's state dict does not match the model it was to be loaded into.

    Args:
        checkpoint: How to name the checkpoint (its path or URL).
        model: The model it was loaded into.
        mismatch: The differences.
        opt_out: How the user loads it anyway (a flag or an argument).
    """

    def __init__(
        self, checkpoint: str, model: nn.Module, mismatch: StateDictMismatch, opt_out: str
    ) -> None:
        self.checkpoint = checkpoint
        self.mismatch = mismatch
        super().__init__(
            f'Refusing to load checkpoint {checkpoint}: its state_dict does not match the model '
            f'({type(model).__name__}), so results with it would be wrong.\n{mismatch.summary()}\n'
            f'To load only the weights that match (the others keep their initial values), '
            f'use {opt_out}.'
        )


def _unwrap(module: nn.Module) -> nn.Module:
    # As MMEngine's load_state_dict: checkpoints hold the keys of the wrapped model.
    while is_model_wrapper(module) or isinstance(module, BaseTTAModel):
        module = module.module
    return module


def _shape_mismatch(error: str) -> ShapeMismatch | None:
    match = _SIZE_MISMATCH.search(error)
    if match is None:
        return None
    return ShapeMismatch(
        match['key'], tuple(json.loads(match['checkpoint'])), tuple(json.loads(match['model']))
    )


def _load_recording(model: nn.Module, state_dict: Mapping[str, Any]) -> StateDictMismatch:
    """Copy what fits into ``model`` as MMEngine's ``load_state_dict`` does; return the rest."""
    missing: list[str] = []
    unexpected: list[str] = []
    errors: list[str] = []
    metadata = getattr(state_dict, '_metadata', None)
    # A copy: the modules' load hooks may rename or replace entries.
    state_dict = OrderedDict(state_dict)
    if metadata is not None:
        state_dict._metadata = metadata

    def load(module: nn.Module, local_state_dict: dict, prefix: str = '') -> None:
        module = _unwrap(module)
        local_metadata = {} if metadata is None else metadata.get(prefix[:-1], {})
        # strict=True only makes torch record unexpected keys; nothing is raised here.
        module._load_from_state_dict(
            local_state_dict, prefix, local_metadata, True, missing, unexpected, errors
        )
        for name, child in module._modules.items():
            if child is not None:
                child_prefix = f'{prefix}{name}.'
                child_state_dict = {
                    k: v for k, v in local_state_dict.items() if k.startswith(child_prefix)
                }
                load(child, child_state_dict, child_prefix)
        # Post hooks may edit the lists in place (e.g. to excuse keys they handle).
        incompatible = _IncompatibleKeys(missing, unexpected)
        for hook in module._load_state_dict_post_hooks.values():
            hook(module, incompatible)

    load(model, state_dict)
    mismatch = StateDictMismatch(
        # As MMEngine: BN counters missing from old checkpoints do not change results.
        missing_keys=[k for k in missing if not k.endswith('num_batches_tracked')],
        unexpected_keys=unexpected,
    )
    for error in errors:
        shape = _shape_mismatch(error)
        if shape is None:
            mismatch.other_errors.append(error)
        else:
            mismatch.shape_mismatches.append(shape)
    return mismatch


def load_state_dict_checked(
    model: nn.Module,
    state_dict: Mapping[str, Any],
    name: str,
    *,
    strict: bool = True,
    opt_out: str = 'strict=False',
) -> StateDictMismatch:
    """Load ``state_dict`` into ``model``; refuse (strict) or log what does not match.

    Args:
        model: The model; model wrappers (DDP) and TTA models are unwrapped.
        state_dict: The weights, keys as in the unwrapped model's ``state_dict()``.
        name: How messages name the checkpoint (its path or URL).
        strict: Raise if any key is missing or unexpected or any shape differs;
            otherwise log the differences as a warning.
        opt_out: What the error message tells the user to pass to load it anyway.

    Returns:
        StateDictMismatch: The differences (empty when the checkpoint fits).

    Raises:
        CheckpointMismatchError: ``strict`` and the state dict does not fit. The
            weights that fit were already copied: discard the model.
    """
    model = _unwrap(model)
    mismatch = _load_recording(model, state_dict)
    if mismatch and strict:
        raise CheckpointMismatchError(name, model, mismatch, opt_out)
    if mismatch:
        print_log(
            f'Checkpoint {name} does not match the model ({type(model).__name__}); loaded only '
            f'the weights that match (strict=False), the others keep their initial values:\n'
            f'{mismatch.summary()}',
            logger='current',
            level=logging.WARNING,
        )
    return mismatch


def load_checkpoint_into(
    model: nn.Module,
    checkpoint: dict,
    name: str,
    *,
    strict: bool = True,
    revise_keys: Sequence[tuple[str, str]] = DEFAULT_REVISE_KEYS,
    opt_out: str = 'strict=False',
) -> StateDictMismatch:
    """Load a loaded checkpoint's state dict into ``model`` with :func:`load_state_dict_checked`.

    Args:
        model: The model.
        checkpoint: What the checkpoint file held: a dict with ``state_dict``,
            or the state dict itself (as MMEngine accepts).
        name: How messages name the checkpoint.
        strict: As for :func:`load_state_dict_checked`.
        revise_keys: ``(pattern, replacement)`` pairs applied to every key, in
            order, before loading (MMEngine's default strips ``module.``).
        opt_out: As for :func:`load_state_dict_checked`.

    Returns:
        StateDictMismatch: The differences (empty when the checkpoint fits).
    """
    source = checkpoint.get('state_dict', checkpoint)
    state_dict = OrderedDict(source)
    for pattern, replacement in revise_keys:
        state_dict = OrderedDict(
            (re.sub(pattern, replacement, key), value) for key, value in state_dict.items()
        )
    # The per-module versions torch stores; some modules' load hooks read them.
    metadata = getattr(source, '_metadata', None)
    if metadata is not None:
        state_dict._metadata = metadata
    return load_state_dict_checked(model, state_dict, name, strict=strict, opt_out=opt_out)


def load_checkpoint_checked(
    model: nn.Module,
    filename: str,
    map_location: Any = None,
    *,
    strict: bool = True,
    revise_keys: Sequence[tuple[str, str]] = DEFAULT_REVISE_KEYS,
) -> dict:
    """``mmengine.runner.load_checkpoint`` with :func:`load_state_dict_checked`, strict by default.

    Args:
        model: The model.
        filename: A path, URL or model-zoo name: any source MMEngine's
            ``CheckpointLoader`` reads (through the safe loader).
        map_location: As for ``torch.load``.
        strict: As for :func:`load_state_dict_checked`.
        revise_keys: As for :func:`load_checkpoint_into`.

    Returns:
        dict: The checkpoint.
    """
    checkpoint = _load_checkpoint(filename, map_location=map_location)
    load_checkpoint_into(model, checkpoint, filename, strict=strict, revise_keys=revise_keys)
    return checkpoint


def _default_weights(model: nn.Module) -> str | None:
    # Where MMPretrain's get_model(pretrained=True) looks: the model-zoo entry of
    # a model name, else the config's load_from.
    metainfo = getattr(model, '_metainfo', None)
    weights = metainfo.weights if metainfo is not None else model._config.get('load_from')
    if not weights:
        warnings.warn('Unable to find pre-defined checkpoint of the model.', stacklevel=3)
    return weights


def _checkpoint_dataset_meta(checkpoint: dict) -> dict:
    meta = checkpoint.get('meta', {})
    if 'dataset_meta' in meta:  # mmpretrain 1.x
        return meta['dataset_meta']
    if 'CLASSES' in meta:  # mmcls 0.x
        return {'classes': meta['CLASSES']}
    return {}


def get_model(
    model: str | Config,
    pretrained: bool | str = False,
    device: str | torch.device | None = None,
    *,
    strict: bool = True,
    url_mapping: tuple[str, str] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """MMPretrain's ``get_model``, loading ``pretrained`` with :func:`load_checkpoint_checked`.

    ``mmpretrain.apis.get_model`` loads ``pretrained`` non-strictly: with a
    checkpoint of another model it returns a model with partly random weights.
    This one refuses such a checkpoint (``strict=False`` loads it as MMPretrain
    does, logging the differences). For an inferencer, pass it the model::

        from mmpretrain.apis import ImageClassificationInferencer
        from chrnn_plugin.engine.strict_loading import get_model

        inferencer = ImageClassificationInferencer(get_model(CONFIG, pretrained=CHECKPOINT))

    Args:
        model: A model name, a config file path or a config, as for MMPretrain.
        pretrained: The checkpoint (path, URL or model-zoo name), True for the
            model's default weights, or False for none.
        device: Where to put the model once loaded.
        strict: As for :func:`load_state_dict_checked`.
        url_mapping: ``(pattern, replacement)`` applied to ``pretrained``, e.g.
            to read a URL from a local directory.
        **kwargs: Overrides of the model config, as for MMPretrain (for
            ``device_map``, dispatch the returned model with
            ``mmpretrain.apis.utils.dispatch_model``).

    Returns:
        nn.Module: The model in eval mode, with MMPretrain's ``_config``,
        ``_dataset_meta`` and ``_metainfo`` attributes.

    Raises:
        CheckpointMismatchError: ``strict`` and the checkpoint does not fit the model.
    """
    # MMPretrain builds the model and records its config; only the loading differs.
    net = mmpretrain_get_model(model, pretrained=False, **kwargs)
    if pretrained is True:
        pretrained = _default_weights(net)
    if pretrained:
        if url_mapping is not None:
            pretrained = re.sub(url_mapping[0], url_mapping[1], pretrained)
        # On the CPU first, as MMPretrain does (mapping to the GPU may leak memory).
        checkpoint = load_checkpoint_checked(net, pretrained, map_location='cpu', strict=strict)
        net._dataset_meta = _checkpoint_dataset_meta(checkpoint) or net._dataset_meta
    if device is not None:
        net.to(device)
    return net
