"""Attention saved with a run: save it under a byte budget, load it back, flatten it to a table.

Two files in the run folder hold the attention of a few held-out examples:

* ``attention.safetensors`` — one float32 tensor (H, Q, K) per example × attention layer, keyed
  ``sample<i>.map<j>``;
* ``attention.json`` — what the tensors mean: per example a title (and ``in_figures`` when the task's
  figures draw it), and per map the layer name, its kind (``self`` / ``cross`` / ``pooling``), the query and
  key labels and the tensor key. A run of a model without attention still writes it, with no samples and a
  ``note`` saying why.

The weights stay under ``ATTENTION_FILE_BUDGET`` bytes whatever the model: the first example is always
kept (its maps cropped to their top-left corner if it alone is over the budget, ``full_shape`` then gives
the whole map's size); later examples, or their maps, that do not fit are left out and named in
``dropped``.

Tasks capture the :class:`~attnlab.nn.maps.AttentionSample` list this module saves with the helpers of
:mod:`attnlab.nn.maps`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
from torch import Tensor

from attnlab.errors import UserError
from attnlab.nn.maps import KINDS, AttentionMap, AttentionSample, layer_roles
from attnlab.report.files import checked_path

log = logging.getLogger(__name__)

ATTENTION_JSON = "attention.json"
ATTENTION_WEIGHTS = "attention.safetensors"
ATTENTION_FORMAT = 1
DEFAULT_LIMIT = 4  # held-out examples a run saves
ATTENTION_FILE_BUDGET = 2_500_000  # bytes of float32 weights in one run's attention.safetensors

# ---------------------------------------------------------------------------------------------- files


def _nbytes(maps: Sequence[AttentionMap]) -> int:
    return sum(m.weights.numel() * 4 for m in maps)


def _crop(m: AttentionMap, factor: float) -> AttentionMap:
    """``m`` cropped to the top-left ``ceil(factor·Q) × ceil(factor·K)`` corner (full_shape records the whole)."""
    q, k = len(m.query_labels), len(m.key_labels)
    q2, k2 = max(1, math.ceil(q * factor)), max(1, math.ceil(k * factor))
    if (q2, k2) == (q, k):
        return m
    return AttentionMap(m.layer, m.kind, m.weights[:, :q2, :k2].contiguous(), m.query_labels[:q2],
                        m.key_labels[:k2], m.full_shape or (q, k))


def fit_budget(samples: Sequence[AttentionSample], budget: int) -> tuple[list[AttentionSample], list[str]]:
    """The samples whose float32 weights fit in ``budget`` bytes, in order.

    The first sample is always kept, its maps cropped to their top-left corners (the same fraction of
    queries and keys for every map) if it alone is over the budget. Each later sample is kept whole if it
    fits, else the maps of it that still fit are kept and the others named.

    Args:
        samples: (H, Q, K) weights per map.
        budget: bytes of float32 weights allowed.

    Returns:
        ``(kept, dropped)``: the samples kept and ``"sample title / layer"`` for each map left out.
    """
    kept: list[AttentionSample] = []
    dropped: list[str] = []
    left = budget
    for index, sample in enumerate(samples):
        maps = list(sample.maps)
        if index == 0:
            factor = 1.0
            while _nbytes(maps) > budget:
                factor *= min(0.97, math.sqrt(budget / _nbytes(maps)))
                maps = [_crop(m, factor) for m in sample.maps]
        else:
            fitting = []
            for m in maps:
                if m.weights.numel() * 4 <= left - _nbytes(fitting):
                    fitting.append(m)
                else:
                    dropped.append(f"{sample.title} / {m.layer}")
            maps = fitting
        if maps:
            left -= _nbytes(maps)
            kept.append(AttentionSample(sample.title, maps, sample.in_figures))
    return kept, dropped


def _map_entry(m: AttentionMap, key: str) -> dict[str, Any]:
    entry = {"tensor": key, "layer": m.layer, "kind": m.kind, "shape": list(m.weights.shape),
             "query_labels": list(map(str, m.query_labels)), "key_labels": list(map(str, m.key_labels))}
    if m.full_shape is not None:
        entry["full_shape"] = list(m.full_shape)
    return entry


def _checked(sample: AttentionSample) -> AttentionSample:
    """``sample`` with (H, Q, K) float32 CPU weights; a ValueError when a map's weights and labels disagree."""
    maps = []
    for m in sample.maps:
        w = m.weights.detach().float().cpu().contiguous()
        if w.dim() == 2:
            w = w.unsqueeze(0)  # (Q, K) -> (1, Q, K)
        if w.dim() != 3 or w.shape[1:] != (len(m.query_labels), len(m.key_labels)):
            raise ValueError(f"{sample.title!r} / {m.layer}: weights {tuple(w.shape)} do not match "
                             f"{len(m.query_labels)} query and {len(m.key_labels)} key labels")
        if m.kind not in KINDS:
            raise ValueError(f"{sample.title!r} / {m.layer}: kind {m.kind!r} is not one of {', '.join(KINDS)}")
        maps.append(AttentionMap(m.layer, m.kind, w, list(m.query_labels), list(m.key_labels), m.full_shape))
    return AttentionSample(sample.title, maps, sample.in_figures)


def save_attention(
    run_dir: str | Path, samples: Sequence[AttentionSample], note: str = "", budget: int = ATTENTION_FILE_BUDGET
) -> Path:
    """Write ``attention.safetensors`` (float32 (H, Q, K) per sample × map) and ``attention.json``.

    Args:
        run_dir: the run folder.
        samples: what :meth:`Experiment.attention_samples` returned (may be empty).
        note: why there is nothing to show when ``samples`` is empty (shown by the report).
        budget: bytes of weights the file may hold (see :func:`fit_budget`); what is left out is named in
            ``attention.json``'s ``dropped`` and logged.

    Returns:
        The path of ``attention.json``.
    """
    run_dir = Path(run_dir)
    kept, dropped = fit_budget([_checked(s) for s in samples], budget)
    cropped = [m for s in kept for m in s.maps if m.full_shape]
    if dropped or cropped:
        crop = (f"the first example cropped to {len(cropped[0].query_labels)}×{len(cropped[0].key_labels)} of "
                f"{cropped[0].full_shape[0]}×{cropped[0].full_shape[1]} queries × keys" if cropped else "")
        log.info("attention kept under %.1f MB: %s", budget / 1e6, "; ".join(
            part for part in (crop, f"{len(dropped)} maps of later examples left out, named in {ATTENTION_JSON}"
                              if dropped else "") if part))
    tensors: dict[str, Tensor] = {}
    entries = []
    for i, sample in enumerate(kept):
        maps = []
        for j, m in enumerate(sample.maps):
            tensors[f"sample{i}.map{j}"] = m.weights
            maps.append(_map_entry(m, f"sample{i}.map{j}"))
        entries.append({"title": sample.title, "in_figures": sample.in_figures, "maps": maps})
    weights_path = run_dir / ATTENTION_WEIGHTS
    if tensors:
        safetensors.torch.save_file(tensors, str(weights_path), metadata={"format": str(ATTENTION_FORMAT)})
    elif weights_path.exists():
        weights_path.unlink()
    path = run_dir / ATTENTION_JSON
    data = {"format": ATTENTION_FORMAT, "weights": ATTENTION_WEIGHTS if tensors else None, "note": note,
            "budget_bytes": budget, "dropped": dropped, "samples": entries}
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return path


@dataclass
class SavedAttention:
    """What ``attention.json`` + ``attention.safetensors`` hold (see :func:`save_attention`).

    Attributes:
        samples: the saved examples, weights (H, Q, K) float32.
        note: why there are no samples (a model without attention), else "".
        dropped: ``"sample title / layer"`` of each map left out to stay within the byte budget.
    """

    samples: list[AttentionSample]
    note: str = ""
    dropped: list[str] = field(default_factory=list)


def read_attention(run_dir: str | Path) -> SavedAttention:
    """The saved attention of a run (see :func:`save_attention`).

    Raises:
        UserError: ``attention.json`` missing, not valid JSON, not matching ``attention.safetensors``, or
            either file a symbolic link.
    """
    run_dir = Path(run_dir)
    path = checked_path(run_dir, ATTENTION_JSON)
    if not path.is_file():
        raise UserError(f"{run_dir} has no saved attention ({ATTENTION_JSON} not found); runs of `attnlab fit` "
                        "save it when they finish")
    try:
        data = json.loads(path.read_text())
        entries = data["samples"]
        note = str(data.get("note") or "")
        dropped = [str(d) for d in data.get("dropped") or []]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise UserError(f"{path} is damaged ({type(err).__name__}: {err}); re-run the experiment") from None
    if not entries:
        return SavedAttention([], note, dropped)
    weights_path = checked_path(run_dir, ATTENTION_WEIGHTS)
    try:
        with safetensors.safe_open(str(weights_path), framework="pt") as f:
            stored = {key: f.get_tensor(key) for key in f.keys()}
    except (OSError, safetensors.SafetensorError) as err:
        raise UserError(f"cannot read {weights_path} ({err}); re-run the experiment") from None
    try:
        samples = [AttentionSample(str(entry["title"]), [_read_map(m, stored) for m in entry["maps"]],
                                   bool(entry.get("in_figures", False))) for entry in entries]
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{path} does not match {weights_path} ({type(err).__name__}: {err}); "
                        "re-run the experiment") from None
    return SavedAttention(samples, note, dropped)


def _read_map(m: dict[str, Any], stored: dict[str, Tensor]) -> AttentionMap:
    w = stored[m["tensor"]]
    queries, keys = [str(s) for s in m["query_labels"]], [str(s) for s in m["key_labels"]]
    if w.dim() != 3 or tuple(w.shape[1:]) != (len(queries), len(keys)):
        raise ValueError(f"tensor {m['tensor']} has shape {tuple(w.shape)}, "
                         f"labels say (H, {len(queries)}, {len(keys)})")
    full = m.get("full_shape")
    return AttentionMap(str(m["layer"]), str(m["kind"]), w.float(), queries, keys,
                        (int(full[0]), int(full[1])) if full else None)


def load_attention(run_dir: str | Path) -> list[AttentionSample]:
    """The attention samples saved in a run folder (``attention.json`` + ``attention.safetensors``).

    Returns:
        One :class:`AttentionSample` per saved example, weights (H, Q, K) float32; [] for a run of a
        model without attention.

    Raises:
        UserError: nothing saved, or the files are damaged.
    """
    return read_attention(run_dir).samples


# ---------------------------------------------------------------------------------------------- tidy table

TABLE_COLUMNS = ("sample", "sample_title", "layer", "layer_name", "kind", "head", "query", "query_label", "key",
                 "key_label", "weight")


def attention_rows(samples: Sequence[AttentionSample]) -> Iterator[tuple[Any, ...]]:
    """One row per sample × layer × head × query × key, in :data:`TABLE_COLUMNS` order.

    Samples and heads are numbered from 1 and layers named by their role, as the report shows them
    (:func:`layer_roles`); ``query`` and ``key`` are positions from 0, with their labels beside them.
    """
    for s, sample in enumerate(samples, start=1):
        for m, role in zip(sample.maps, layer_roles(sample.maps), strict=True):
            weights = m.weights.float().numpy()  # (H, Q, K)
            for h in range(weights.shape[0]):
                for q, query in enumerate(m.query_labels):
                    for k, key in enumerate(m.key_labels):
                        yield (s, sample.title, role, m.layer, m.kind, h + 1, q, query, k, key, float(weights[h, q, k]))
