"""Checkpoints as plain data: what ``torch.load(weights_only=True)`` reads without anything of ours.

MMEngine's ``HistoryBuffer`` (message hub) and numpy values (RNG states, logged values) in a training
checkpoint become tagged dicts of tensors and numbers (``to_plain``); ``from_plain`` rebuilds the exact
objects on load. ``MMEngineFixesHook`` writes every checkpoint this way; the checkpoint loaders of
``checkpoint_io`` rebuild them as they read.
"""
from collections import OrderedDict

import numpy as np
import torch

# What torch's weights_only unpickler reads: containers of tensors and plain Python values. A training
# checkpoint adds MMEngine's ``HistoryBuffer`` (message hub), numpy arrays and scalars (RNG states, logged
# values); ``to_plain`` turns each into a dict tagged with ``PLAIN_TAG`` holding tensors and numbers, and
# ``from_plain`` rebuilds the same objects (same dtype, same values, bit for bit).
PLAIN_TAG = '__plain_type__'


def _tensor_of(a: np.ndarray):
    """``(tensor, numpy dtype string)`` of a numeric array, or None for a dtype torch cannot hold."""
    if a.dtype.kind not in 'biufc':
        return None
    native = a.dtype.newbyteorder('=')
    try:
        return torch.from_numpy(np.array(a, dtype=native, copy=True)), a.dtype.str
    except (TypeError, ValueError):
        return None


def _encode(obj):
    """``(plain form, changed)`` of ``obj``; containers are rebuilt only when something inside changed."""
    from mmengine.logging import HistoryBuffer
    if isinstance(obj, torch.Tensor) or obj is None or type(obj) in (str, bytes, bool, int, float):
        return obj, False
    if isinstance(obj, np.str_):  # a subclass of str that pickles as a numpy scalar
        return {PLAIN_TAG: 'numpy.str_', 'value': str(obj)}, True
    if isinstance(obj, HistoryBuffer):
        log, count = obj.data
        log_t, count_t = _tensor_of(log), _tensor_of(count)
        if log_t is None or count_t is None:
            return obj, False
        return {PLAIN_TAG: 'mmengine.HistoryBuffer', 'log_history': log_t[0], 'log_dtype': log_t[1],
                'count_history': count_t[0], 'count_dtype': count_t[1], 'max_length': int(obj.max_length)}, True
    if isinstance(obj, (np.ndarray, np.generic)):
        t = _tensor_of(np.asarray(obj))
        if t is None:
            return obj, False
        kind = 'numpy.ndarray' if isinstance(obj, np.ndarray) else 'numpy.scalar'
        return {PLAIN_TAG: kind, 'data': t[0], 'dtype': t[1]}, True
    if isinstance(obj, np.dtype):
        return {PLAIN_TAG: 'numpy.dtype', 'dtype': obj.str}, True
    if type(obj) in (dict, OrderedDict):
        items = [(k, _encode(v)) for k, v in obj.items()]
        if not any(changed for _, (_, changed) in items):
            return obj, False
        out = type(obj)((k, v) for k, (v, _) in items)
        if hasattr(obj, '_metadata'):  # a module state dict's versions
            out._metadata = obj._metadata
        return out, True
    if type(obj) in (list, tuple):
        items = [_encode(v) for v in obj]
        if not any(changed for _, changed in items):
            return obj, False
        return type(obj)(v for v, _ in items), True
    return obj, False


def _decode(obj):
    if type(obj) in (dict, OrderedDict):
        tag = obj.get(PLAIN_TAG)
        if tag == 'mmengine.HistoryBuffer':
            from mmengine.logging import HistoryBuffer
            return HistoryBuffer(obj['log_history'].numpy().astype(obj['log_dtype']),
                                 obj['count_history'].numpy().astype(obj['count_dtype']), obj['max_length'])
        if tag == 'numpy.ndarray':
            return obj['data'].numpy().astype(obj['dtype'])
        if tag == 'numpy.scalar':
            return obj['data'].numpy().astype(obj['dtype'])[()]
        if tag == 'numpy.dtype':
            return np.dtype(obj['dtype'])
        if tag == 'numpy.str_':
            return np.str_(obj['value'])
        for k, v in obj.items():
            new = _decode(v)
            if new is not v:
                obj[k] = new
        return obj
    if type(obj) is list:
        for i, v in enumerate(obj):
            obj[i] = _decode(v)
        return obj
    if type(obj) is tuple:
        items = tuple(_decode(v) for v in obj)
        return obj if all(a is b for a, b in zip(items, obj)) else items
    return obj


def to_plain(checkpoint: dict) -> dict:
    """Makes a checkpoint dict loadable with ``torch.load(weights_only=True)``, in place (and returns it):
    MMEngine's ``HistoryBuffer`` and numpy arrays / scalars / dtypes anywhere in it become tagged plain dicts.
    Values of other types are left as they are (a checkpoint holding one then still needs the full loader)."""
    for key in list(checkpoint):
        checkpoint[key] = _encode(checkpoint[key])[0]
    return checkpoint


def from_plain(obj):
    """The inverse of ``to_plain`` (in place for dicts and lists; returns the result). Idempotent: objects
    already rebuilt, and checkpoints written before ``to_plain`` existed, pass through unchanged."""
    return _decode(obj)
