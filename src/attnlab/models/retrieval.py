"""Forecasters fitted in closed form: a ridge linear map, and attnlab's own retrieval-attention forecaster.

Neither is trained by gradient descent. The forecast experiment calls ``fit_closed_form(train, val, memory)``
before training (the engine's ``prepare_model`` hook) with functions that give the training and validation
windows a batch at a time: the maps are solved on the training windows and their few settings are picked on
the validation windows. Both are channel-independent: each of the C channels of a window is a univariate
series, and one map serves every channel; ``ridge`` fits one map for every series of a panel.

``ridge``
    The honest linear baseline in its strongest form: least squares from the last L values of a channel
    to its next H, each window centred on its last value (so the map predicts changes, as NLinear), ridge
    strength chosen on validation. No intercept: a constant would learn the training period's average
    drift, which need not hold later.

``retrieval``
    ridge + a Nadaraya–Watson attention over the training windows (Nadaraya 1964, Watson 1964; the
    retrieval idea of RAFT, Han et al. 2025). The query is the newest ``key_len`` steps of the window,
    each key the newest ``key_len`` input steps of one training window, both centred and scaled to unit
    norm, so the score is their Pearson correlation divided by a temperature. Each query attends to its
    ``top_k`` best-scoring keys; the values are what the ridge map got wrong on those training windows
    (their H-step residuals). The forecast is ``ridge(x) + β · attention``, with β ∈ [0, 1] solved in
    closed form on the validation windows (β = 0 leaves the ridge forecast unchanged). Key length,
    temperature and top-k are chosen on validation too, and by default the attention is kept only if it
    beats the ridge alone by more than one standard error on held-out blocks (``selection``).

Shapes: input (B, L, C) standardised values → output (B, H, C). The retrieval attention records
(C, B, N) weights per call, N = training windows: one row per window and channel over the memory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence, Sized
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.catalog.forecast import RetrievalConfig, RidgeConfig
from attnlab.data.forecasting import count_windows
from attnlab.models.capabilities import Windows
from attnlab.nn.attention import Attention
from attnlab.nn.scoring import DotScore

# Ridge strengths tried on validation, as a multiple of the number of training rows (so the choice does not
# depend on how long the training split is). The last, infinity, is the limit W = 0: the last value repeated, the
# naive forecast, which validation keeps where no linear map of the past beats it (a random walk).
RIDGE_ALPHAS = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, math.inf)
_CHUNK = 256  # windows per step while accumulating sums over a split
MAX_BANK_BYTES = 8 * 2**30  # keys + values of the retrieval memory
# Retrieval's temperatures tried on validation (the correlation scores lie in [-1, 1]), and its neighbour counts:
# absolute, so that a neighbour set means the same on a long and a short series (each at most the windows there are).
TEMPERATURES = (0.03, 0.1, 0.3)
TOP_KS = (10, 30, 100, 300, 1000)
# What a retrieval model uses before its fit, and what runs saved before these were chosen on validation used.
UNFITTED_KEY_LEN, UNFITTED_TEMPERATURE, UNFITTED_TOP_K = 48, 0.1, 300
_GATHER_FLOATS = 1 << 24  # the fit's gathered values (C, rows, k, H) per step: 64 MiB of float32
# How a candidate is chosen from its validation errors (see `choose`): "min", the lowest error; "one_se", the simplest
# candidate whose error is within one standard error of the lowest (Breiman et al. 1984), the standard error measured
# over up to SE_BLOCKS contiguous blocks of the validation windows, each at least one horizon of windows long (so
# that no two blocks forecast the same steps).
SELECTIONS = ("min", "one_se")
SE_BLOCKS = 10


def se_blocks(windows: int, horizon: int) -> int:
    """How many blocks ``windows`` validation windows are cut into: up to :data:`SE_BLOCKS`, each at least
    ``horizon`` windows (consecutive windows share all but one of their H target steps); at least 1."""
    return max(1, min(SE_BLOCKS, windows // max(horizon, 1)))


def _window_batches(series: Tensor, seq_len: int, pred_len: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Stride-1 windows of ``series`` (R, C), :data:`_CHUNK` at a time, as views: x (n, L, C), y (n, H, C)."""
    w = series.T.unfold(1, seq_len + pred_len, 1)  # (C, N, L + H)
    for start in range(0, w.shape[1], _CHUNK):
        chunk = w[:, start : start + _CHUNK].permute(1, 2, 0)  # (n, L + H, C)
        yield chunk[:, :seq_len], chunk[:, seq_len:]


def count_windows_in(windows: Windows) -> int:
    """How many windows ``windows()`` yields: its ``len()`` where it has one (the forecast task's), else one pass."""
    return len(windows) if isinstance(windows, Sized) else sum(len(x) for x, _ in windows())


def block_ids(start: int, n: int, total: int, blocks: int) -> Tensor:
    """The block (0 … blocks − 1) of windows start … start + n − 1 of ``total``, cut into contiguous blocks: (n,)."""
    if blocks == 1:
        return torch.zeros(n, dtype=torch.long)
    return torch.arange(start, start + n) * blocks // max(total, 1)


def _beta(ra: Tensor, aa: Tensor) -> Tensor:
    """β = Σ r·a / Σ a², clipped to [0, 1] (0 where Σ a² = 0), elementwise: () or (G,) sums."""
    return (ra / aa.clamp(min=1e-300)).clamp(0.0, 1.0).where(aa > 0, 0.0)


def _normal_equations(
    windows: Windows, seq_len: int, pred_len: int, blocks: int | None = 1
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Sums for least squares over every window and channel, each window centred on its last input value, in
    float64, per block of contiguous windows (``blocks`` of them, in the order ``windows()`` yields; None:
    :func:`se_blocks`): XᵀX (G, L, L), XᵀY (G, L, H), ΣY² (G,) and the number of rows (windows × channels) (G,)."""
    total = count_windows_in(windows) if blocks != 1 else 0  # one block needs no count
    blocks = se_blocks(total, pred_len) if blocks is None else blocks
    gram = torch.zeros(blocks, seq_len, seq_len, dtype=torch.float64)
    cross = torch.zeros(blocks, seq_len, pred_len, dtype=torch.float64)
    sq, rows = torch.zeros(blocks, dtype=torch.float64), torch.zeros(blocks, dtype=torch.float64)
    start = 0
    for x, y in windows():
        ids = block_ids(start, len(x), total, blocks)
        start += len(x)
        x, y = x.double().transpose(1, 2), y.double().transpose(1, 2)  # (n, C, L), (n, C, H)
        last = x[..., -1:]
        x, y = x - last, y - last
        for g in ids.unique().tolist():
            xg = x[ids == g].reshape(-1, seq_len)  # (m·C, L)
            yg = y[ids == g].reshape(-1, pred_len)  # (m·C, H)
            gram[g] += xg.T @ xg
            cross[g] += xg.T @ yg
            sq[g] += (yg * yg).sum()
            rows[g] += xg.shape[0]
    return gram, cross, sq, rows


def check_selection(selection: str) -> None:
    """Raise ValueError unless ``selection`` is one of :data:`SELECTIONS`."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}; "
                         f"set model.selection to one of them")


def choose(errors: Tensor, counts: Tensor, complexity: Sequence[float], selection: str) -> int:
    """Pick a candidate from its squared errors on each validation block.

    Args:
        errors: (K, G) sum of squared errors of K candidates on G blocks (any common offset per block cancels).
        counts: (G,) values scored in each block.
        complexity: (K,) lower is simpler (the naive forecast 0).
        selection: "min": the lowest total error; "one_se": the simplest candidate whose total mean squared error
            exceeds the lowest by at most one standard error of that difference, measured over the non-empty blocks
            (with fewer than two there is no standard error, and no evidence against the simplest: it is chosen).

    Returns:
        The index of the chosen candidate.
    """
    check_selection(selection)
    mse = errors.sum(1) / counts.sum()  # (K,)
    best = int(mse.argmin())
    used = counts > 0
    if selection == "min":
        return best
    if int(used.sum()) < 2:
        return min(range(len(mse)), key=lambda i: (complexity[i], float(mse[i])))
    per_block = errors[:, used] / counts[used]  # (K, G') mean squared error per block
    diff = per_block - per_block[best]  # (K, G') paired with the best candidate
    se = diff.std(dim=1) / math.sqrt(diff.shape[1])  # (K,)
    admissible = [i for i in range(len(mse)) if float(mse[i] - mse[best]) <= float(se[i])]
    return min(admissible, key=lambda i: (complexity[i], float(mse[i])))


class RidgeLinear(nn.Module):
    """The closed-form ridge map ``ŷ = (x − x_L) W + x_L`` shared by all channels (x_L: the window's last value).

    ``fit`` solves W on the training windows for every lookback in :func:`lookbacks` (the newest ℓ ≤ L input steps)
    and every strength in :data:`RIDGE_ALPHAS`, and keeps the pair with the lowest validation MSE; an infinite
    strength is W = 0. The map of a lookback ℓ is W with its first L − ℓ rows zero, so the forward is the same for
    every choice. Until fitted, W is zero (the forecast repeats the last value).

    Forward: x (B, L, C) → (B, H, C).
    """

    def __init__(self, seq_len: int, pred_len: int) -> None:
        super().__init__()
        self.seq_len, self.pred_len = seq_len, pred_len
        self.register_buffer("weight", torch.zeros(seq_len, pred_len))  # (L, H)
        self.register_buffer("alpha", torch.tensor(math.nan))  # the chosen strength (NaN: not fitted)
        self.lookback = seq_len  # the chosen ℓ, for the log (W's first L − ℓ rows are zero)

    def forward(self, x: Tensor) -> Tensor:
        last = x[:, -1:, :]  # (B, 1, C)
        return torch.einsum("blc,lh->bhc", x - last, self.weight) + last  # (B, H, C)

    @torch.no_grad()
    def fit(self, train: Windows, val: Windows, selection: str = "min") -> float:
        """Solve W on the ``train`` windows and pick the lookback and strength on the ``val`` windows by ``selection``
        (:func:`choose`; a candidate's complexity is its effective degrees of freedom, Σ λ/(λ + α), the naive
        forecast's 0); returns the validation MSE of the chosen map."""
        gram, cross, _, rows = (t[0] for t in _normal_equations(train, self.seq_len, self.pred_len))
        gram_v, cross_v, sq_v, rows_v = _normal_equations(val, self.seq_len, self.pred_len, None)
        candidates, errors, complexity = [], [], []
        for ell in lookbacks(self.seq_len):  # the newest ell steps: the last rows and columns of the sums
            g, c, g_v, c_v = gram[-ell:, -ell:], cross[-ell:], gram_v[:, -ell:, -ell:], cross_v[:, -ell:]
            eye = torch.eye(ell, dtype=gram.dtype)
            # complexity (one_se only): effective degrees of freedom Σ λ/(λ + α·rows) over XᵀX's eigenvalues
            eigenvalues = torch.linalg.eigvalsh(g).clamp(min=0) if selection == "one_se" else None  # (ell,)
            for alpha in RIDGE_ALPHAS:
                infinite = not math.isfinite(alpha)
                w = torch.zeros_like(c) if infinite else torch.linalg.solve(g + alpha * rows * eye, c)  # (ell, H)
                # ‖XW − Y‖² = tr(WᵀXᵀXW) − 2 tr(WᵀXᵀY) + ΣY² per block, without building the validation predictions
                errors.append((w * (g_v @ w)).sum((1, 2)) - 2 * (w * c_v).sum((1, 2)) + sq_v)  # (G,)
                free = 0.0 if infinite or eigenvalues is None else (eigenvalues / (eigenvalues + alpha * rows)).sum()
                complexity.append(float(free))
                candidates.append((alpha, ell, w))
        sse = torch.stack(errors)  # (K, G)
        i = choose(sse, rows_v * self.pred_len, complexity, selection)
        alpha, ell, w = candidates[i]
        self.weight.zero_()
        self.weight[self.seq_len - ell :] = w
        self.alpha.fill_(alpha)
        self.lookback = ell
        return float(sse[i].sum() / (rows_v.sum() * self.pred_len))


def lookbacks(seq_len: int) -> list[int]:
    """The lookbacks the ridge map tries: L·k/8 for k = 1…8 (whole steps, at least 2), so the choice scales with
    the input the user gives rather than with one data set's season."""
    return sorted({min(seq_len, max(2, round(seq_len * k / 8))) for k in range(1, 9)})


class RidgeForecaster(nn.Module):
    """Closed-form ridge forecaster (see the module docstring). Forward: x (B, L, C) → (B, H, C)."""

    def __init__(self, config: RidgeConfig) -> None:
        super().__init__()
        seq_len, pred_len, _ = config.sizes()
        check_selection(config.selection)
        self.config = config
        self.linear = RidgeLinear(seq_len, pred_len)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)

    def fit_closed_form(self, train: Windows, val: Windows, memory: Tensor | None = None) -> dict[str, float]:
        """Fit on the training windows, choose the lookback and strength on the validation windows (``memory`` is
        unused)."""
        mse = self.linear.fit(train, val, self.config.selection)
        return {"alpha": float(self.linear.alpha), "lookback": self.linear.lookback, "val_mse": mse}


def key_lens(seq_len: int, season: int | None) -> list[int]:
    """The key lengths retrieval tries: 1, 2 and 4 seasons (a season of at least 4 steps), else L/16, L/8 and L/4;
    each at least 2 and at most L."""
    unit = season if season is not None and season >= 4 else seq_len / 16
    return sorted({min(seq_len, max(2, round(unit * k))) for k in (1, 2, 4)})


# A sequence whose centred norm is below this fraction of its norm is constant up to float rounding: its
# correlation with anything is undefined, and scaling its rounding noise to unit norm would give it a random one.
CONSTANT_TOL = 1e-5


def unit_keys(x: Tensor) -> Tensor:
    """Centre and scale sequences (…, S) to unit norm, so the dot product of two is their correlation. A constant
    sequence (centred norm ≤ :data:`CONSTANT_TOL` × its norm) gives zeros: it correlates with nothing (a constant
    query attends to no training window, and its forecast is the ridge map's)."""
    centred = x - x.mean(-1, keepdim=True)
    norm = centred.norm(dim=-1, keepdim=True)  # (…, 1)
    constant = norm <= CONSTANT_TOL * x.norm(dim=-1, keepdim=True)
    return torch.where(constant, 0.0, centred / norm.clamp(min=torch.finfo(x.dtype).tiny))


class RetrievalForecaster(nn.Module):
    """ridge + attention over the training windows' ridge residuals (attnlab's own design; module docstring).

    The training rows are kept as a buffer (``memory``, (R, C)), so a saved run forecasts on its own;
    keys (C, N, S) and values (C, N, H) are derived from them on first use.

    Forward: x (B, L, C) → (B, H, C).
    """

    def __init__(self, config: RetrievalConfig) -> None:
        super().__init__()
        seq_len, pred_len, n_channels = config.sizes()
        if config.key_len is not None and not 2 <= config.key_len <= seq_len:
            raise ValueError(f"key_len must be between 2 and the input length {seq_len}, got {config.key_len}; "
                             f"set model.key_len to a value in that range")
        if config.top_k is not None and config.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {config.top_k}")
        if config.temperature is not None and not config.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {config.temperature}")
        check_selection(config.selection)
        self.config = config
        # The settings in use: the config's, or (None there) chosen on validation by fit_closed_form. Buffers, so a
        # saved run keeps them; before a fit, the values runs saved before the choice existed used.
        key_len = min(UNFITTED_KEY_LEN, seq_len) if config.key_len is None else config.key_len
        temperature = UNFITTED_TEMPERATURE if config.temperature is None else config.temperature
        top_k = UNFITTED_TOP_K if config.top_k is None else config.top_k
        self.register_buffer("chosen_key_len", torch.tensor(key_len))
        self.register_buffer("chosen_temperature", torch.tensor(temperature))
        self.register_buffer("chosen_top_k", torch.tensor(top_k))
        self.linear = RidgeLinear(seq_len, pred_len)
        self.attention = Attention(DotScore())
        self.register_buffer("memory", torch.zeros(0, n_channels))  # (R, C) training rows
        self.register_buffer("beta", torch.tensor(0.0))  # weight of the attention correction
        self._bank: tuple[Tensor, Tensor] | None = None  # keys (C, N, S), values (C, N, H)
        self.memory_labels: list[str] | None = None  # one label per training window, if the data gave times

    def _load_from_state_dict(self, state_dict: dict[str, Tensor], prefix: str, *args: Any, **kwargs: Any) -> None:
        memory = state_dict.get(prefix + "memory")
        if memory is not None:  # the memory's length is the saved run's, not known at construction
            self.memory = torch.empty_like(memory, device=self.memory.device)
        for name in ("chosen_key_len", "chosen_temperature", "chosen_top_k"):  # runs saved before: the old defaults
            state_dict.setdefault(prefix + name, getattr(self, name).clone())
        self._bank = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _apply(self, fn: Callable[[Tensor], Tensor], *args: Any, **kwargs: Any) -> RetrievalForecaster:
        self._bank = None  # rebuilt on the new device / dtype
        return super()._apply(fn, *args, **kwargs)

    @property
    def key_len(self) -> int:
        """S, the newest input steps compared with the training windows' (chosen on validation unless set)."""
        return int(self.chosen_key_len)

    @property
    def temperature(self) -> float:
        """What the correlation scores are divided by (chosen on validation unless set)."""
        return float(self.chosen_temperature)

    @property
    def top_k(self) -> int:
        """How many training windows each query attends to (chosen on validation unless set)."""
        return int(self.chosen_top_k)

    @property
    def memory_windows(self) -> int:
        """N, the training windows in the memory."""
        return count_windows(self.memory.shape[0], self.linear.seq_len, self.linear.pred_len)

    @torch.no_grad()
    def bank(self) -> tuple[Tensor, Tensor]:
        """Keys (C, N, S): the newest ``key_len`` input steps of each training window, unit-normalised;
        values (C, N, H): the ridge map's errors on those windows."""
        if self._bank is None:
            if self.memory.shape[0] == 0:
                raise RuntimeError("RetrievalForecaster has no memory: call fit_closed_form(train, val) first")
            seq_len, pred_len = self.linear.seq_len, self.linear.pred_len
            inputs = self.memory.T.unfold(1, seq_len, 1)[:, : self.memory_windows]  # (C, N, L)
            keys = unit_keys(inputs[..., seq_len - self.key_len :])  # (C, N, S)
            values = keys.new_empty(keys.shape[0], keys.shape[1], pred_len)  # (C, N, H), filled chunk by chunk
            start = 0
            for x, y in _window_batches(self.memory, seq_len, pred_len):  # (n, L, C), (n, H, C)
                values[:, start : start + len(x)] = (y - self.linear(x)).permute(2, 0, 1)
                start += len(x)
            self._bank = (keys, values)
        return self._bank

    def _queries(self, x: Tensor) -> Tensor:
        """Each channel's newest ``key_len`` steps of x (B, L, C), unit-normalised: (C, B, S); zero where constant."""
        return unit_keys(x[:, -self.key_len :, :].transpose(1, 2)).transpose(0, 1)

    def correction(self, x: Tensor) -> Tensor:
        """The attention term before β: x (B, L, C) → (B, H, C)."""
        keys, values = self.bank()  # (C, N, S), (C, N, H)
        queries = self._queries(x) / self.temperature  # (C, B, S)
        k = min(self.top_k, keys.shape[1])
        with torch.no_grad():  # which keys each query may attend to: its k best correlations; none for a constant query
            scores = queries @ keys.transpose(1, 2)  # (C, B, N)
            mask = scores >= scores.topk(k, dim=-1).values[..., -1:]  # (C, B, N)
            mask &= queries.ne(0).any(-1, keepdim=True)  # a fully masked row: no correction
        context, _ = self.attention(queries, keys, values, mask=mask)  # (C, B, H)
        return context.permute(1, 2, 0)  # (B, H, C)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) + self.beta * self.correction(x)

    @torch.no_grad()
    def fit_closed_form(self, train: Windows, val: Windows, memory: Tensor | None = None) -> dict[str, float]:
        """Fit the ridge map on the training windows (as ``ridge`` does) and keep the training rows ``memory`` (R, C)
        of the one series; then, for each key length in :func:`key_lens`, temperature in :data:`TEMPERATURES` and
        top-k in :data:`TOP_KS` (or the config's, when set), solve β on the validation windows, β = Σ r·a / Σ a² over
        every value (r: ridge error, a: attention term) clipped to [0, 1]. ``selection`` "min" keeps the triple
        whose β lowers the validation error most; "one_se" (default) scores each block of validation windows
        (:func:`se_blocks`) with the β of the other blocks, and keeps the best triple only if it beats the attention
        off by more than one standard error (:func:`choose`; with fewer than two blocks, the attention is off).
        With the attention off, β = 0: the forecast is the ridge map's, exactly its twin's."""
        if memory is None:
            raise ValueError("retrieval attends over the training windows of one series (a wide CSV); for many "
                             "series use ridge or patch_transformer")
        seq_len, pred_len = self.linear.seq_len, self.linear.pred_len
        cfg = self.config
        lengths = key_lens(seq_len, cfg.season) if cfg.key_len is None else [cfg.key_len]
        temperatures = TEMPERATURES if cfg.temperature is None else (cfg.temperature,)
        windows = count_windows(memory.shape[0], seq_len, pred_len)
        top_ks = sorted({min(k, windows) for k in (TOP_KS if cfg.top_k is None else (cfg.top_k,))})
        needed = 4 * memory.shape[1] * windows * (max(lengths) + pred_len)  # float32 keys (C, N, S), values (C, N, H)
        if needed > MAX_BANK_BYTES:
            raise ValueError(f"the retrieval memory would need {needed / 2**30:.1f} GiB ({memory.shape[1]} channels x "
                             f"{windows} training windows x {max(lengths) + pred_len} values; limit "
                             f"{MAX_BANK_BYTES / 2**30:.0f} GiB); use a shorter --horizon, fewer channels "
                             "or the ridge model")
        ridge_mse = self.linear.fit(train, val)  # as `ridge` (its twin) fits it by default
        self.memory = memory.detach().to(self.memory.device, torch.float32).clone()
        total = count_windows_in(val)
        blocks = se_blocks(total, pred_len)
        values_per_window = memory.shape[1] * pred_len
        counts = torch.bincount(block_ids(0, total, total, blocks), minlength=blocks).double() * values_per_window
        # (key length, temperature, k) -> Σ r·a and Σ a² per block of validation windows, (G,) each
        sums: dict[tuple[int, float, int], tuple[Tensor, Tensor]] = {}
        for key_len in lengths:
            self.chosen_key_len.fill_(key_len)
            self._bank = None
            start = 0
            for x, y in val():  # (n, L, C), (n, H, C)
                ids = block_ids(start, len(x), total, blocks)  # (n,)
                start += len(x)
                x, y = x.to(self.memory), y.to(self.memory)
                r = (y - self.linear(x)).permute(2, 0, 1).double()  # (C, n, H) the ridge's errors
                for temperature, k, rows, a in self._candidate_terms(x, temperatures, top_ks):
                    a = a.double()  # (C, m, H)
                    ra, aa = sums.setdefault((key_len, temperature, k), (torch.zeros_like(counts),
                                                                         torch.zeros_like(counts)))
                    ra.index_add_(0, ids[rows], (r[:, rows] * a).sum((0, 2)))
                    aa.index_add_(0, ids[rows], (a * a).sum((0, 2)))
        # Candidates: the attention off (β = 0, the ridge alone), then each triple with its β; their errors are
        # counted from the ridge's: ‖r − βa‖² − ‖r‖² = β²·Σa² − 2β·Σr·a per block. β fitted on every block always
        # lowers the validation error, so "one_se" scores each block with the β of the other blocks (cross-fitted).
        triples, betas, errors = list(sums), [0.0], [torch.zeros_like(counts)]
        for ra, aa in sums.values():
            betas.append(float(_beta(ra.sum(), aa.sum())))
            beta = betas[-1] if cfg.selection == "min" else _beta(ra.sum() - ra, aa.sum() - aa)  # () or (G,)
            errors.append(beta * beta * aa - 2 * beta * ra)  # (G,)
        i = choose(torch.stack(errors), counts, [0.0] + [1.0] * len(triples), cfg.selection)
        best = i if i > 0 else 1 + int(torch.stack(errors[1:]).sum(1).argmin())  # with the attention off: its best
        beta, (key_len, temperature, k) = betas[i], triples[best - 1]
        self.beta.fill_(beta)
        self.chosen_key_len.fill_(key_len)
        self.chosen_temperature.fill_(temperature)
        self.chosen_top_k.fill_(k)
        self._bank = None
        return {"alpha": float(self.linear.alpha), "lookback": self.linear.lookback, "key_len": key_len,
                "temperature": temperature, "top_k": k, "beta": beta, "ridge_val_mse": ridge_mse}

    def _candidate_terms(
        self, x: Tensor, temperatures: Sequence[float], top_ks: Sequence[int]
    ) -> Iterator[tuple[float, int, slice, Tensor]]:
        """The attention term (before β) of ``x`` (n, L, C) for every temperature and top-k at the current key length,
        as :meth:`correction` computes it, from one score matrix and one top-k: yields ``(temperature, k, rows, a)``,
        a (C, m, H) the term of the windows ``rows`` (the values are gathered a block of rows at a time)."""
        keys, values = self.bank()  # (C, N, S), (C, N, H)
        queries = self._queries(x)  # (C, n, S)
        informative = queries.ne(0).any(-1, keepdim=True)  # (C, n, 1): a constant query gets no correction
        top, index = (queries @ keys.transpose(1, 2)).topk(max(top_ks), dim=-1)  # (C, n, K) best correlations first
        C, n, K = top.shape
        step = max(1, _GATHER_FLOATS // (C * K * values.shape[-1]))
        flat = values.reshape(C * keys.shape[1], -1)  # (C·N, H)
        index = index + torch.arange(C, device=x.device)[:, None, None] * keys.shape[1]  # rows of `flat`
        for i0 in range(0, n, step):
            rows = slice(i0, i0 + step)
            picked = flat.index_select(0, index[:, rows].reshape(-1)).view(C, -1, K, flat.shape[1])  # (C, m, K, H)
            for temperature in temperatures:
                w = torch.exp((top[:, rows] - top[:, rows, :1]) / temperature)  # (C, m, K) softmax numerators
                for k in top_ks:
                    a = torch.einsum("cmk,cmkh->cmh", w[..., :k], picked[:, :, :k])  # (C, m, H)
                    yield temperature, k, rows, a / w[..., :k].sum(-1, keepdim=True) * informative[:, rows]

    def token_labels(self, timestamps: Sequence[str]) -> list[str]:
        """Labels of the attended keys: the training windows (by the time of their last input step when the
        forecast experiment set ``memory_labels``, else by index)."""
        n = self.memory_windows
        if self.memory_labels is not None and len(self.memory_labels) == n:
            return list(self.memory_labels)
        return [f"train window {i}" for i in range(n)]

    def query_labels(self, timestamps: Sequence[str]) -> list[str]:
        """The one query per window and channel: the window's newest ``key_len`` steps."""
        return [f"last {self.key_len} steps to {timestamps[-1]}" if timestamps else "query"]
