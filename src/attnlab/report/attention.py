"""Attention saved with a run: record it from a model, save it, load it back.

Two files in the run folder hold the attention of a few held-out examples:

* ``attention.safetensors`` — one float32 tensor (H, Q, K) per example × attention layer, keyed
  ``sample<i>.map<j>``;
* ``attention.json`` — what the tensors mean: per example a title, and per map the layer name, its
  kind (``self`` / ``cross`` / ``pooling``), the query and key labels and the tensor key. A run of a
  model without attention still writes it, with no samples and a ``note`` saying why.

Tasks build their :class:`~attnlab.experiments.base.AttentionSample` list with :func:`record_maps`
(run a forward pass under :func:`attnlab.nn.record_attention`, join repeated decoder-step calls) and
:func:`samples_from_maps` (split the batch into examples, attach labels, crop padding), or both at
once with :func:`collect_attention`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.errors import UserError
from attnlab.experiments.base import AttentionMap, AttentionSample, DataSplits, Experiment
from attnlab.nn.record import RECORDABLE, record_attention

log = logging.getLogger(__name__)

ATTENTION_JSON = "attention.json"
ATTENTION_WEIGHTS = "attention.safetensors"
ATTENTION_FORMAT = 1
DEFAULT_LIMIT = 4  # held-out examples a run saves
KINDS = ("self", "cross", "pooling")

Labels = Callable[[int, str, str], tuple[Sequence[Any], Sequence[Any]]]


# ---------------------------------------------------------------------------------------------- recording


def has_attention(model: nn.Module) -> bool:
    """True if ``model`` holds an attnlab attention layer that :func:`attnlab.nn.record_attention` can see."""
    return any(isinstance(m, RECORDABLE) for m in model.modules())


def infer_kind(layer: str) -> str:
    """Kind of a layer from its name: ``cross`` if it says ``cross``, ``self`` if it says ``self``,
    else ``pooling`` (a query that is not one of the keys, e.g. a learned pooling query)."""
    name = layer.lower()
    if "cross" in name:
        return "cross"
    if "self" in name:
        return "self"
    return "pooling"


def merge_calls(calls: Sequence[Tensor], newest_only: bool = False) -> Tensor:
    """Join the weights of the calls of one layer during one forward pass into one map per example.

    A decoder that generates step by step calls its layers once per step: with a KV cache, step t
    gives one query row over t + 1 self-attention keys (or over all S encoder keys for
    cross-attention). The rows are stacked along the query axis; a row with fewer keys than the
    longest is padded with zeros on the right (the keys it could not see yet).

    Args:
        calls: the recorded weights of each call, (B, H, Q_i, K_i) for multi-head layers or
            (B, Q_i, K_i) for :class:`attnlab.nn.Attention` (read as H = 1).
        newest_only: keep only the last query row of each call: for a decoder without a cache that
            re-runs its whole prefix at every step (call t holds t + 1 rows; the earlier ones repeat).

    Returns:
        (B, H, ΣQ_i, max K_i) float32 (ΣQ_i = number of calls when ``newest_only``).
    """
    if not calls:
        raise ValueError("merge_calls needs at least one recorded call")
    rows = []
    for weights in calls:
        if weights.dim() == 3:
            weights = weights.unsqueeze(1)  # (B, Q, K) -> (B, 1, Q, K)
        if weights.dim() != 4:
            raise ValueError(f"attention weights must be (B, H, Q, K) or (B, Q, K), got shape {tuple(weights.shape)}")
        rows.append(weights[:, :, -1:] if newest_only else weights)
    keys = max(w.shape[-1] for w in rows)
    rows = [F.pad(w, (0, keys - w.shape[-1])) for w in rows]  # right-pad keys with zeros
    return torch.cat(rows, dim=2).float()  # (B, H, ΣQ, K)


def record_maps(
    model: nn.Module, forward: Callable[[], Any], newest_only: bool = False
) -> tuple[Any, dict[str, Tensor]]:
    """Run ``forward()`` once with every attention layer of ``model`` recorded, in eval mode, without gradients.

    Args:
        model: the model ``forward`` calls (its training mode is restored afterwards).
        forward: a function of no arguments that runs the model on a batch, e.g. ``lambda: model(x)``.
        newest_only: see :func:`merge_calls`.

    Returns:
        ``(output, maps)``: what ``forward()`` returned, and for each attention layer in order of first
        call, its weights (B, H, Q, K) with repeated calls joined along Q (:func:`merge_calls`).
        ``maps`` is empty for a model without attnlab attention layers.
    """
    was_training = model.training
    model.eval()
    try:
        if not has_attention(model):
            with torch.no_grad():
                return forward(), {}
        with torch.no_grad(), record_attention(model) as record:
            output = forward()
    finally:
        model.train(was_training)
    return output, {name: merge_calls(calls, newest_only).cpu() for name, calls in record.items()}


def samples_from_maps(
    maps: Mapping[str, Tensor],
    titles: Sequence[str],
    labels: Labels,
    kind: Callable[[str], str] = infer_kind,
) -> list[AttentionSample]:
    """Split batched maps into one :class:`AttentionSample` per example, with labelled axes.

    Args:
        maps: layer name -> (B, H, Q, K) weights (what :func:`record_maps` returns).
        titles: B titles, one per example (e.g. ``"test sentence 3: BLEU 41.2"``).
        labels: ``labels(i, layer, kind) -> (query_labels, key_labels)`` for example ``i`` of the
            batch. Labels are turned into strings. Fewer labels than rows or columns crop the map
            to its top-left corner: return only the real tokens of a padded example to drop the padding.
        kind: layer name -> ``"self"``, ``"cross"`` or ``"pooling"`` (default :func:`infer_kind`).

    Returns:
        B samples; each holds one :class:`AttentionMap` per layer, weights (H, Q, K) float32 on the CPU.
    """
    samples = [AttentionSample(str(title), []) for title in titles]
    for layer, weights in maps.items():
        if weights.dim() != 4 or weights.shape[0] != len(titles):
            raise ValueError(f"layer {layer}: expected weights (B={len(titles)}, H, Q, K), got {tuple(weights.shape)}")
        layer_kind = kind(layer)
        if layer_kind not in KINDS:
            raise ValueError(f"layer {layer}: kind {layer_kind!r} is not one of {', '.join(KINDS)}")
        for i, sample in enumerate(samples):
            queries, keys = (list(map(str, axis)) for axis in labels(i, layer, layer_kind))
            if len(queries) > weights.shape[2] or len(keys) > weights.shape[3]:
                raise ValueError(f"layer {layer}, example {i}: {len(queries)} query and {len(keys)} key labels "
                                 f"for a map of {weights.shape[2]} queries and {weights.shape[3]} keys")
            w = weights[i, :, : len(queries), : len(keys)].detach().float().cpu().contiguous()  # (H, Q, K)
            sample.maps.append(AttentionMap(layer, layer_kind, w, queries, keys))
    return samples


def collect_attention(
    model: nn.Module,
    forward: Callable[[], Any],
    titles: Sequence[str],
    labels: Labels,
    kind: Callable[[str], str] = infer_kind,
    newest_only: bool = False,
) -> list[AttentionSample]:
    """:func:`record_maps` then :func:`samples_from_maps`: the common case of ``Experiment.attention_samples``.

    Example (a Transformer encoder over token ids ``x`` (B, L))::

        tokens = [[vocab[t] for t in row] for row in x.tolist()]
        return collect_attention(model, lambda: model(x), [f"test {i}" for i in range(len(x))],
                                 lambda i, layer, kind: (tokens[i], tokens[i]))

    Returns [] for a model without attention layers.
    """
    _, maps = record_maps(model, forward, newest_only)
    return samples_from_maps(maps, titles, labels, kind) if maps else []


# ---------------------------------------------------------------------------------------------- files


def save_attention(run_dir: str | Path, samples: Sequence[AttentionSample], note: str = "") -> Path:
    """Write ``attention.safetensors`` (float32 (H, Q, K) per sample × map) and ``attention.json``.

    Args:
        run_dir: the run folder.
        samples: what :meth:`Experiment.attention_samples` returned (may be empty).
        note: why there is nothing to show when ``samples`` is empty (shown by the report).

    Returns:
        The path of ``attention.json``.
    """
    run_dir = Path(run_dir)
    tensors: dict[str, Tensor] = {}
    entries = []
    for i, sample in enumerate(samples):
        maps = []
        for j, m in enumerate(sample.maps):
            w = m.weights.detach().float().cpu().contiguous()
            if w.dim() == 2:
                w = w.unsqueeze(0)  # (Q, K) -> (1, Q, K)
            if w.dim() != 3 or w.shape[1:] != (len(m.query_labels), len(m.key_labels)):
                raise ValueError(f"{sample.title!r} / {m.layer}: weights {tuple(w.shape)} do not match "
                                 f"{len(m.query_labels)} query and {len(m.key_labels)} key labels")
            if m.kind not in KINDS:
                raise ValueError(f"{sample.title!r} / {m.layer}: kind {m.kind!r} is not one of {', '.join(KINDS)}")
            key = f"sample{i}.map{j}"
            tensors[key] = w
            maps.append({"tensor": key, "layer": m.layer, "kind": m.kind, "shape": list(w.shape),
                         "query_labels": list(map(str, m.query_labels)), "key_labels": list(map(str, m.key_labels))})
        entries.append({"title": sample.title, "maps": maps})
    weights_path = run_dir / ATTENTION_WEIGHTS
    if tensors:
        safetensors.torch.save_file(tensors, str(weights_path), metadata={"format": str(ATTENTION_FORMAT)})
    elif weights_path.exists():
        weights_path.unlink()
    path = run_dir / ATTENTION_JSON
    data = {"format": ATTENTION_FORMAT, "weights": ATTENTION_WEIGHTS if tensors else None, "note": note,
            "samples": entries}
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return path


def read_attention(run_dir: str | Path) -> tuple[list[AttentionSample], str]:
    """The saved attention of a run and its note (see :func:`save_attention`).

    Raises:
        UserError: ``attention.json`` missing, not valid JSON, or not matching ``attention.safetensors``.
    """
    run_dir = Path(run_dir)
    path = run_dir / ATTENTION_JSON
    if not path.is_file():
        raise UserError(f"{run_dir} has no saved attention ({ATTENTION_JSON} not found); runs of `attnlab fit` "
                        "save it when they finish")
    try:
        data = json.loads(path.read_text())
        entries = data["samples"]
        note = str(data.get("note") or "")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise UserError(f"{path} is damaged ({type(err).__name__}: {err}); re-run the experiment") from None
    if not entries:
        return [], note
    weights_path = run_dir / ATTENTION_WEIGHTS
    try:
        with safetensors.safe_open(str(weights_path), framework="pt") as f:
            stored = {key: f.get_tensor(key) for key in f.keys()}
    except (OSError, safetensors.SafetensorError) as err:
        raise UserError(f"cannot read {weights_path} ({err}); re-run the experiment") from None
    samples = []
    try:
        for entry in entries:
            maps = []
            for m in entry["maps"]:
                w = stored[m["tensor"]]
                queries, keys = [str(s) for s in m["query_labels"]], [str(s) for s in m["key_labels"]]
                if w.dim() != 3 or tuple(w.shape[1:]) != (len(queries), len(keys)):
                    raise ValueError(f"tensor {m['tensor']} has shape {tuple(w.shape)}, "
                                     f"labels say (H, {len(queries)}, {len(keys)})")
                maps.append(AttentionMap(str(m["layer"]), str(m["kind"]), w.float(), queries, keys))
            samples.append(AttentionSample(str(entry["title"]), maps))
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{path} does not match {weights_path} ({type(err).__name__}: {err}); "
                        "re-run the experiment") from None
    return samples, note


def load_attention(run_dir: str | Path) -> list[AttentionSample]:
    """The attention samples saved in a run folder (``attention.json`` + ``attention.safetensors``).

    Returns:
        One :class:`AttentionSample` per saved example, weights (H, Q, K) float32; [] for a run of a
        model without attention.

    Raises:
        UserError: nothing saved, or the files are damaged.
    """
    return read_attention(run_dir)[0]


def write_run_attention(
    run_dir: str | Path, experiment: Experiment, model: nn.Module, data: DataSplits, limit: int = DEFAULT_LIMIT
) -> Path:
    """Ask the experiment for the attention of up to ``limit`` held-out examples and save it in ``run_dir``.

    With nothing to show, ``attention.json`` still records why (no attention layers in the model, or
    a task that does not provide attention samples).
    """
    samples = experiment.attention_samples(model, data, limit=limit)
    note = ""
    if not samples:
        if has_attention(model):
            note = f"the {type(experiment).name} experiment does not provide attention samples"
        else:
            note = f"{type(model).__name__} has no attention layers"
    return save_attention(run_dir, samples[:limit], note)
