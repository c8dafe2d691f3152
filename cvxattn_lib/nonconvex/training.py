r"""Training non-convex models on the regularised objective, with restarts.

Objective (the project's convention): :math:`\sum_i \ell(f(x_i), y_i) + \beta\,\mathrm{penalty}`,
where a model's ``penalty()`` is half the sum of its squared Frobenius norms.  Any ``nn.Module``
with ``forward`` and ``penalty`` can be trained here.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from ..losses import torch_loss
from ..validation import choice, positive_int


@dataclass
class TrainRun:
    """One training run: final objective (float64), weights, objective history, seed."""

    objective: float
    weights: dict
    history: list = field(repr=False)
    seed: int
    model: torch.nn.Module = field(repr=False)


def as_tensors(X, Y, loss: str, dtype=torch.float64, device=None):
    """X as a float tensor, Y as float targets (squared) or int64 labels (cross_entropy)."""
    Xt = torch.as_tensor(np.asarray(X), dtype=dtype, device=device)
    if loss == "squared":
        Yt = torch.as_tensor(np.asarray(Y), dtype=dtype, device=device)
    else:
        Yt = torch.as_tensor(np.asarray(Y), dtype=torch.int64, device=device)
    return Xt, Yt


def penalty(model) -> torch.Tensor:
    """Half the sum of squared Frobenius norms of all trainable weights (weight decay / beta)."""
    return 0.5 * sum(p.square().sum() for p in model.parameters() if p.requires_grad)


def objective(model, X: torch.Tensor, Y: torch.Tensor, beta: float, loss: str) -> torch.Tensor:
    """sum-over-samples loss + beta * penalty, as a differentiable torch scalar."""
    return torch_loss(model(X), Y, loss) + beta * penalty(model)


def evaluate(model, X, Y, beta: float, loss: str = "squared") -> float:
    """The objective of ``model`` in float64, without gradients."""
    p = next(model.parameters())
    model64 = model.double() if p.dtype != torch.float64 else model
    Xt, Yt = as_tensors(X, Y, loss, device=p.device)
    with torch.no_grad():
        return float(objective(model64, Xt, Yt, beta, loss))


def fit_lbfgs(model, X: torch.Tensor, Y: torch.Tensor, beta: float, loss: str = "squared",
              max_iter: int = 2000, lr: float | None = None, tol: float = 1e-14) -> list[float]:
    """Minimise the objective in place with L-BFGS (strong Wolfe line search), in blocks of 100
    iterations until the objective changes by less than ``tol`` relatively; return the history."""
    inner = 100
    opt = torch.optim.LBFGS([p for p in model.parameters() if p.requires_grad], lr=lr or 1.0,
                            max_iter=inner, history_size=50, tolerance_grad=1e-13,
                            tolerance_change=1e-16, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        f = objective(model, X, Y, beta, loss)
        f.backward()
        return f

    history: list[float] = []
    prev = np.inf
    for _ in range(max(1, max_iter // inner)):
        opt.step(closure)
        with torch.no_grad():
            cur = float(objective(model, X, Y, beta, loss))
        history.append(cur)
        if not np.isfinite(cur) or abs(prev - cur) <= tol * max(abs(cur), 1.0):
            break
        prev = cur
    return history


def fit_adam_batched(models: list, X: torch.Tensor, Y: torch.Tensor, beta: float,
                     loss: str = "squared", steps: int = 4000, lr: float | None = None,
                     progress: bool = False) -> list[list[float]]:
    """Adam with a cosine-decaying rate on several copies of one architecture at once.

    The copies are stacked (``torch.func.stack_module_state``) and evaluated with ``vmap``; their
    objectives are summed.  Adam acts coordinate-wise, so this is exactly ``len(models)``
    independent Adam runs, in one pass.  Weights are written back into ``models``; returns each
    copy's objective every 100 steps.
    """
    from torch.func import functional_call, stack_module_state

    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}

    def one(p, b, x):
        return functional_call(base, (p, b), (x,))

    batched = torch.vmap(one, in_dims=(0, 0, None))
    R = len(models)

    def per_copy():
        U = batched(params, buffers, X)  # (R, n, c)
        if loss == "squared":
            fit_term = 0.5 * (U - Y).square().flatten(1).sum(1)
        else:
            fit_term = torch.nn.functional.cross_entropy(
                U.transpose(1, 2), Y.expand(R, -1), reduction="none").sum(1)
        pen = 0.5 * sum(v.square().flatten(1).sum(1) for v in params.values())
        return fit_term + beta * pen

    opt = torch.optim.Adam(list(params.values()), lr=lr or 1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    history: list[list[float]] = []
    for step in tqdm(range(steps), desc="Adam (all restarts)", disable=not progress, leave=False):
        opt.zero_grad()
        f = per_copy()
        f.sum().backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            history.append(f.detach().cpu().tolist())
    with torch.no_grad():
        for r, model in enumerate(models):
            for name, p in model.named_parameters():
                p.copy_(params[name][r])
    return [list(h) for h in zip(*history)]


OPTIMIZERS = ("lbfgs", "adam", "adam+lbfgs")
SMALL_MODEL = 5_000_000  # parameters x samples x restarts below which one CPU thread is fastest


@contextmanager
def cpu_threads_for(work: int, device=None):
    """Run tiny CPU work on one thread: for toy-sized tensors, waking torch's worker threads costs
    more than the arithmetic (20x slower on a loaded 2-core machine).  Restores the setting."""
    small = work < SMALL_MODEL and (device is None or torch.device(device).type == "cpu")
    before = torch.get_num_threads()
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(before)


def train_restarts(make_model: Callable[[torch.Generator], torch.nn.Module], X, Y, beta: float,
                   loss: str = "squared", restarts: int = 20, seed: int = 0,
                   optimizer: Literal["lbfgs", "adam", "adam+lbfgs"] = "lbfgs",
                   max_iter: int = 2000, lr: float | None = None, device=None,
                   progress: bool = True, polish_iter: int = 500) -> list[TrainRun]:
    """Train ``restarts`` models from independent seeded initialisations.

    ``make_model(generator)`` builds a fresh model whose random draws use ``generator``.
    ``optimizer``: ``'lbfgs'`` (each run to convergence, up to ``max_iter`` iterations),
    ``'adam'`` (all runs at once, ``max_iter`` steps, cosine-decaying rate ``lr``), or
    ``'adam+lbfgs'`` (Adam, then an L-BFGS polish of at most ``polish_iter`` iterations per run:
    best for ReLU, whose kinks stall L-BFGS from a random start).  Returns the runs in seed order; the best is
    ``min(runs, key=lambda r: r.objective)``.
    """
    restarts = positive_int("restarts", restarts)
    choice("optimizer", optimizer, OPTIMIZERS)
    seeds = [seed * 100_003 + k for k in range(restarts)]
    models = []
    for s in seeds:
        model = make_model(torch.Generator().manual_seed(s))
        models.append(model.to(device) if device is not None else model)
    p = next(models[0].parameters())
    Xt, Yt = as_tensors(X, Y, loss, dtype=p.dtype, device=p.device)
    histories: list[list[float]] = [[] for _ in models]
    work = sum(q.numel() for q in models[0].parameters()) * Xt.shape[0] * restarts
    with cpu_threads_for(work, p.device):
        if optimizer in ("adam", "adam+lbfgs"):
            histories = fit_adam_batched(models, Xt, Yt, beta, loss, steps=max_iter, lr=lr,
                                         progress=progress)
        if optimizer in ("lbfgs", "adam+lbfgs"):
            polish = optimizer == "adam+lbfgs"
            for model, hist in zip(tqdm(models, desc="L-BFGS restarts", disable=not progress,
                                        leave=False), histories):
                hist.extend(fit_lbfgs(model, Xt, Yt, beta, loss,
                                      max_iter=polish_iter if polish else max_iter,
                                      lr=None if polish else lr))
    return [TrainRun(objective=evaluate(m, X, Y, beta, loss), weights=m.weights(), history=h,
                     seed=s, model=m) for m, h, s in zip(models, histories, seeds)]
