"""The training engine: the one loop every strategy trains through.

AdamW over the trainable parameters (optionally in groups with their own learning
rates), batches from every task at each step (one forward pass for tasks on the same
inputs), task losses combined by a weighting method (a plain sum by default), early
stopping on a validation criterion, best-state restore. Randomness (batch order,
dropout) comes from the run's seed only, so the same seed gives the same numbers on CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from polytask.config import TrainConfig
from polytask.core.errors import DivergedError, UndefinedMetricError
from polytask.core.tasks import higher_is_better
from polytask.data.prepare import PreparedTask, Split
from polytask.methods.weighting.base import Weighting
from polytask.training.sampling import batch_plan
from polytask.training.taskgrads import assign_gradient, task_gradients

# Rows per forward pass when evaluating or caching features. Large batches do not pay on
# CPU: EfficientNet-Lite0 at 64 px computes 600 rows 2.9x faster in batches of 128 than in
# one batch (activations fall out of cache), and attention memory grows with the batch.
EVAL_BATCH = 128


@dataclass
class FitResult:
    """What a call to :func:`fit` did.

    Attributes:
        best_epoch: epoch (1-based) whose state was restored.
        epochs: epochs run before stopping.
        seconds: wall time of training, evaluation included.
        best_val: validation metric per task at the best epoch.
        history: per epoch, the mean training loss and each task's validation metric.
    """

    best_epoch: int
    epochs: int
    seconds: float
    best_val: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Fix torch's global generator (initialization, dropout) for this process."""
    torch.manual_seed(seed)


def _batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless shuffled index batches; a reshuffle each pass over the data."""
    while True:
        perm = torch.randperm(n, generator=gen)
        chunks = list(perm.split(batch_size))
        # A one-sample batch breaks BatchNorm in training mode; its sample comes back next pass.
        if len(chunks) > 1 and len(chunks[-1]) == 1:
            chunks.pop()
        yield from chunks


def _same_rows(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a is b or (a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b)))


def same_input_groups(data: dict[str, PreparedTask], split: str = "train") -> list[list[str]]:
    """Tasks whose ``split`` inputs are the same rows (label columns of one file, one
    builtin's targets), in order of first appearance; a task with inputs of its own is a
    group of one."""
    groups: list[list[str]] = []
    for n, d in data.items():
        x = getattr(d, split).x
        for g in groups:
            if _same_rows(x, getattr(data[g[0]], split).x):
                g.append(n)
                break
        else:
            groups.append([n])
    return groups


class _Rows:
    """Each step's training rows per task, drawn from its labelled rows only.

    Tasks that read the same inputs and are labelled on the same rows (and take as many
    per step) draw from one stream: they get the same rows, one batch for all of them.
    ``forward_groups`` lists the tasks whose rows one backbone pass serves (see
    :func:`_shared_losses`); a group of one is a task computed on its own.
    """

    def __init__(self, data: dict[str, PreparedTask], rows: dict[str, int], gen: torch.Generator, shared: bool, alone: set[str]):
        self.labelled = {n: torch.nonzero(d.task.labelled_rows(d.train.y)).flatten() for n, d in data.items()}
        empty = [n for n, idx in self.labelled.items() if len(idx) == 0]
        if empty:
            raise ValueError(f"task '{empty[0]}' has no labelled training rows")
        self.sizes = {n: len(idx) for n, idx in self.labelled.items()}
        candidates = same_input_groups(data) if shared else [[n] for n in data]
        self.forward_groups = []
        for g in candidates:
            together = [n for n in g if n not in alone]
            self.forward_groups += ([together] if together else []) + [[n] for n in g if n in alone]
        self.stream_of: dict[str, int] = {}
        self.streams: list[Iterator[torch.Tensor]] = []
        for g in self.forward_groups:
            for n in g:
                twin = next((m for m in g if m in self.stream_of and rows[m] == rows[n] and torch.equal(self.labelled[m], self.labelled[n])), None)
                if twin is None:
                    self.stream_of[n] = len(self.streams)
                    self.streams.append(_batches(self.sizes[n], rows[n], gen))
                else:
                    self.stream_of[n] = self.stream_of[twin]
        self._owner = {i: n for n, i in reversed(list(self.stream_of.items()))}

    def draw(self) -> dict[str, torch.Tensor]:
        """Row indices (into each task's training split) for one step."""
        drawn = [next(s) for s in self.streams]
        positions = {i: self.labelled[self._owner[i]][p] for i, p in enumerate(drawn)}
        return {n: positions[i] for n, i in self.stream_of.items()}


def _shared_losses(model: nn.Module, data: dict[str, PreparedTask], group: list[str], idx: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Losses of tasks that read the same inputs, from one backbone pass over the union of
    their rows (one batch when they drew the same rows); each task's loss reads its rows."""
    first = idx[group[0]]
    same = all(idx[n] is first for n in group)
    union = first if same else torch.unique(torch.cat([idx[n] for n in group]))
    z = model.backbone(data[group[0]].train.x[union])
    heads = [model.heads[n] for n in group]
    if same and all(type(h) is nn.Linear and h.bias is not None for h in heads):
        # One batch for every task: all linear heads in one matrix product (the same
        # numbers as one product per head, without T small ones).
        weight = torch.cat([h.weight for h in heads])
        bias = torch.cat([h.bias for h in heads])
        outs = dict(zip(group, F.linear(z, weight, bias).split([h.out_features for h in heads], dim=1)))
    else:
        outs = {n: model.heads[n](z if same else z[torch.searchsorted(union, idx[n])]) for n in group}
    return {n: data[n].task.loss(outs[n], data[n].train.y[idx[n]]) for n in group}


@torch.no_grad()
def _outputs(model: nn.Module, task: PreparedTask, split: Split) -> torch.Tensor:
    """Head outputs of ``model`` for every row of ``split`` (eval mode, in batches)."""
    was = model.training
    model.eval()
    outs = [model(x, task.task.name) for x in split.x.split(EVAL_BATCH)]
    model.train(was)
    return torch.cat(outs)


def evaluate(model: nn.Module, task: PreparedTask, split: Split) -> tuple[float, float]:
    """Primary metric and mean loss of ``model`` on one split of ``task`` (eval mode)."""
    out = _outputs(model, task, split)
    return task.task.score(out, split.y), task.task.loss(out, split.y).item()


@torch.no_grad()
def _validate(model: nn.Module, data: dict[str, PreparedTask], shared: bool) -> tuple[dict[str, float], dict[str, float]]:
    """Every task's validation metric and loss; tasks validated on the same rows share one
    backbone pass when the model has one representation for every head."""
    metrics, losses = {}, {}
    groups = same_input_groups(data, "val") if shared else [[n] for n in data]
    was = model.training
    model.eval()
    for g in groups:
        x = data[g[0]].val.x
        z = torch.cat([model.backbone(chunk) for chunk in x.split(EVAL_BATCH)]) if len(g) > 1 else None
        for n in g:
            out = model.heads[n](z) if z is not None else torch.cat([model(chunk, n) for chunk in x.split(EVAL_BATCH)])
            metrics[n], losses[n] = data[n].task.score(out, data[n].val.y), data[n].task.loss(out, data[n].val.y).item()
    model.train(was)
    return metrics, losses


@dataclass
class Predictions:
    """A model's predictions on the labelled rows of one split, as the metric reads them.

    Attributes:
        metric: the task's metric on these rows.
        truth: labels (class indices, or values in the target's units).
        pred: class probabilities ``[N, C]``, probability of class 1 ``[N]``, or values ``[N, K]``.
    """

    metric: float
    truth: np.ndarray
    pred: np.ndarray


def predict(model: nn.Module, task: PreparedTask, split: Split) -> Predictions:
    """Predictions of ``model`` on the labelled rows of ``split``, with the task's metric.

    Kept per test row so the analysis can resample test rows (their sampling error is
    part of how sure a comparison is).
    """
    out = _outputs(model, task, split)
    mask = task.task.labelled_rows(split.y)
    truth, pred = task.task.truth(split.y[mask]), task.task.predictions(out[mask])
    return Predictions(task.task.scorer.score(truth, pred), truth, pred)


def _shared_params(model: nn.Module, weighting: Weighting | None) -> list[torch.Tensor]:
    if weighting is None or not weighting.requires_grads:
        return []
    if not hasattr(model, "shared_parameters"):
        raise ValueError(f"weighting '{weighting.name}' needs per-task gradients of shared layers, but the model has no shared_parameters()")
    shared = [p for p in model.shared_parameters() if p.requires_grad]
    if not shared:
        raise ValueError(f"weighting '{weighting.name}' balances gradients of shared layers, but this model shares no trainable parameters")
    return shared


def _finite(total: torch.Tensor, epoch: int) -> float:
    value = total.item()  # one scalar read per step, reused for the check and the log
    if not math.isfinite(value):
        raise DivergedError(f"training loss became {value} at epoch {epoch}")
    return value


def _backward(losses: list[torch.Tensor], weighting: Weighting | None, shared: list[torch.Tensor], others: list[torch.Tensor], epoch: int):
    """Fill ``.grad`` for one step; return the summed task loss and the task weights used.

    ``None`` sums the losses. A loss-weighting method scales them. A gradient method
    combines the per-task gradients of the shared layers, while each head, which only
    its own task's loss reaches, gets its task's plain gradient: balancing is about the
    shared layers, and a constant scale on one head's gradient would be undone by
    AdamW's per-parameter normalization anyway.
    """
    if len(losses) == 1 and weighting is None:
        total = losses[0]
    else:
        total = torch.stack(losses).sum()
    value = _finite(total, epoch)
    if weighting is None:
        total.backward()
        return value, None
    stacked = torch.stack(losses)
    if not weighting.requires_grads:
        weights = weighting.weights(stacked.detach())
        (weights.to(stacked.dtype) * stacked).sum().backward()
        return value, weights
    grads = task_gradients(losses, shared)
    combined, weights = weighting.combine(grads, stacked.detach())
    head_grads = torch.autograd.grad(total, others, allow_unused=True) if others else []
    for p, g in zip(others, head_grads):
        if g is not None:
            p.grad = g
    assign_gradient(shared, combined)
    return value, weights


def _rep_grad_step(model: nn.Module, x: torch.Tensor, targets: dict[str, PreparedTask], idx: torch.Tensor, weighting: Weighting, epoch: int):
    """One step's gradients with the tasks balanced on the shared representation.

    ``z = backbone(x)`` once; each task's gradient with respect to ``z`` (through its
    head only) goes to the method, and the combined gradient flows back through the
    backbone in one backward pass. By the chain rule a combination ``sum_t w_t dL_t/dz``
    gives the backbone ``sum_t w_t dL_t/dtheta``; heads get their own task's gradient.
    """
    z = model.backbone(x[idx])
    rep = z.detach().requires_grad_()
    losses = [d.task.loss(model.heads[n](rep), d.train.y[idx]) for n, d in targets.items()]
    stacked = torch.stack(losses)
    value = _finite(stacked.sum(), epoch)
    grads = []
    for loss in losses:
        (g,) = torch.autograd.grad(loss, rep, retain_graph=True, allow_unused=True)
        grads.append(torch.zeros_like(rep) if g is None else g)
    combined, weights = weighting.combine(torch.stack(grads).flatten(1), stacked.detach())
    stacked.sum().backward()  # heads' gradients; what reaches ``rep`` is discarded
    z.backward(combined.view_as(z))
    return value, weights


def _task_loss(model: nn.Module, d: PreparedTask, name: str, idx: torch.Tensor, augmenter, gen: torch.Generator, penalty) -> torch.Tensor:
    """One task's training loss on one batch: augmented when asked, plus the penalty."""
    x, y = d.train.x[idx], d.train.y[idx]
    if augmenter is None:
        loss = d.task.loss(model(x, name), y)
    else:
        from polytask.data.augment import augmented_loss

        aug = augmenter(x, gen)
        x = aug.x
        loss = augmented_loss(d.task.loss, model(x, name), y, aug)
    if penalty is not None:
        loss = loss + penalty(model, x, name, y)
    return loss


def _check_rep_grad(model: nn.Module, data: dict[str, PreparedTask], weighting: Weighting | None) -> torch.Tensor:
    """The training inputs every task shares; ValueError when ``rep_grad`` cannot apply."""
    if weighting is None or not weighting.requires_grads:
        name = "summed losses" if weighting is None else f"'{weighting.name}'"
        raise ValueError(f"rep_grad balances per-task gradients of the representation, which {name} never reads: use a gradient method")
    if not (hasattr(model, "backbone") and isinstance(getattr(model, "heads", None), nn.ModuleDict)):
        raise ValueError("rep_grad needs one representation read by every head: a model with .backbone(x) and .heads[task] (architecture 'hard')")
    names = list(data)
    x = data[names[0]].train.x
    for n in names[1:]:
        other = data[n].train.x
        if other is not x and (other.shape != x.shape or not torch.equal(other, x)):
            raise ValueError(f"rep_grad takes every task's gradient on one shared batch, but tasks '{names[0]}' and '{n}' train on different inputs")
    return x


def _criterion(select: str | Sequence[str], data: dict[str, PreparedTask]):
    """Validation criterion, higher is better: one task's metric, minus the mean loss, or
    for several tasks the mean of their metrics, each signed so that higher is better and
    divided by its value at the first evaluation, so that tasks of different scales (an
    accuracy, an RMSE in dollars) weigh alike."""
    if isinstance(select, str) and select == "loss":
        return lambda metrics, losses: -sum(losses.values()) / len(losses)
    names = [select] if isinstance(select, str) else list(select)
    sign = {n: 1.0 if higher_is_better(data[n].task.metric) else -1.0 for n in names}
    if len(names) == 1:
        return lambda metrics, losses: sign[names[0]] * metrics[names[0]]
    first: dict[str, float] = {}

    def mean_relative(metrics: dict[str, float], losses: dict[str, float]) -> float:
        if not first:
            first.update({n: abs(metrics[n]) if math.isfinite(metrics[n]) and metrics[n] != 0 else 1.0 for n in names})
        return sum(sign[n] * metrics[n] / first[n] for n in names) / len(names)

    return mean_relative


def fit(
    model: nn.Module,
    data: dict[str, PreparedTask],
    train: TrainConfig,
    seed: int,
    select: str | Sequence[str] | Callable[[nn.Module], float] = "loss",
    param_groups: list[dict[str, Any]] | None = None,
    callbacks: Sequence[Any] = (),
    weighting: Weighting | None = None,
    sampling: dict[str, float] | None = None,
    rep_grad: bool = False,
    penalty: nn.Module | None = None,
    augment: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``model(x, task_name)`` on every task in ``data`` and restore its best state.

    Each step draws one batch from every task's labelled rows, so a small task is cycled
    rather than starved by a large one; an epoch is one pass over the largest task, and at
    least ``train.min_steps_per_epoch`` steps. Tasks that read the same inputs share one
    forward pass of a model whose heads read one representation (``shares_representation``,
    hard sharing): the backbone runs once over the union of their rows, one batch when
    they are labelled on the same rows. With ``sampling``, task ``t`` puts about
    ``batch_size * T * p_t`` rows in each step and its loss is scaled by ``T * p_t``
    (:func:`polytask.training.sampling.batch_plan`): the step is then the mean over a batch
    mixed in those proportions.

    Args:
        model: module called as ``model(x, task_name)``.
        data: prepared tasks to train on (their validation splits drive selection).
        train: optimizer and stopping rules.
        seed: fixes batch order and dropout.
        select: task whose primary validation metric picks the best epoch, several
            tasks (the mean of their metrics relative to the first evaluation; one model
            for several targets), ``"loss"`` for the mean validation loss over all tasks,
            or a function ``select(model)``
            scoring the model after each epoch, higher is better (e.g. a domain
            adaptation validator that needs no target labels).
        param_groups: AdamW parameter groups (e.g. a lower learning rate for pretrained
            layers); default: every trainable parameter at ``train.lr``.
        callbacks: objects with an optional ``on_epoch_end(epoch, max_epochs, record)``.
        weighting: how task losses combine (:mod:`polytask.methods.weighting`); ``None`` sums them.
            Gradient methods get per-task gradients of ``model.shared_parameters()``;
            each epoch's mean effective task weights are logged as ``w_<task>``.
        sampling: probability of each task's rows (:func:`polytask.training.sampling.task_probabilities`);
            ``None`` draws ``train.batch_size`` rows of every task per step (uniform).
        rep_grad: balance gradients of the shared representation instead of the shared
            parameters (gradient methods, a model with ``.backbone`` and ``.heads``, tasks
            training on the same inputs): one batch of rows serves every task.
        penalty: an extra loss per step (:mod:`polytask.methods.finetuning.regularizers`, domain
            adaptation), called as ``penalty(model, x, task, y)`` right after the model's
            forward on that task's batch and added to its loss. Optional hooks:
            ``attach(model)`` before training, ``begin(total_steps)`` with the step
            budget, ``trainable_parameters()`` (trained at ``train.lr``).
        augment: per task, an augmenter (:func:`polytask.data.augment.build_augmenter`)
            applied to training batches only, with randomness from the run's seed.

    Returns:
        A :class:`FitResult`; ``model`` holds the best state.

    Raises:
        DivergedError: when a training loss is NaN or infinite.
        ValueError: when ``rep_grad`` cannot apply, or a method needs it and it is off.
    """
    start = time.perf_counter()
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    names = list(data)
    augment = {n: a for n, a in (augment or {}).items() if a is not None and n in data}
    if penalty is not None and weighting is not None:
        raise ValueError("a penalty adds to one objective; it does not combine with a multi-task weighting method")
    if weighting is not None and weighting.representation_only and not rep_grad:
        raise ValueError(f"'{weighting.name}' balances gradients of the shared representation: pass rep_grad=True")
    # One representation read by every head: tasks on the same inputs share forward passes.
    one_representation = getattr(model, "shares_representation", False) and penalty is None
    labelled = {n: int(data[n].task.labelled_rows(data[n].train.y).sum()) for n in names}
    rows, scale = batch_plan(labelled, sampling, train.batch_size) if sampling else ({n: train.batch_size for n in names}, None)
    if rep_grad:
        shared_x = _check_rep_grad(model, data, weighting)
        if sampling:
            raise ValueError("rep_grad shares one batch between the tasks, so they cannot be sampled at different rates")
        if augment or penalty is not None:
            raise ValueError("rep_grad shares one batch between the tasks; per-task augmentation and penalties do not apply to it")
        stream = _batches(len(shared_x), train.batch_size, gen)
        sizes = dict.fromkeys(names, len(shared_x))
    else:
        batcher = _Rows(data, rows, gen, shared=one_representation, alone=set(augment))
        sizes = batcher.sizes
    steps = max(train.min_steps_per_epoch, *(math.ceil(sizes[n] / rows[n]) for n in names))
    # Every refusal is above: the penalty's hooks go on the model only for a run that trains.
    groups = list(param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}])
    if penalty is not None:
        if hasattr(penalty, "attach"):
            penalty.attach(model)
        own = list(penalty.trainable_parameters()) if hasattr(penalty, "trainable_parameters") else []
        if own:
            groups.append({"params": own})
    # foreach: on CPU still a pass per tensor, but cheaper than the default loop (1.4 ms
    # against 2.0 ms for the 84 tensors of 40 small heads; BENCHMARKS.md).
    opt = torch.optim.AdamW(groups, lr=train.lr, weight_decay=train.weight_decay, foreach=True)
    score_of = (lambda metrics, losses: select(model)) if callable(select) else _criterion(select, data)
    shared = [] if rep_grad else _shared_params(model, weighting)
    others = [p for p in model.parameters() if p.requires_grad and all(p is not q for q in shared)]
    learns_after_step = weighting is not None and type(weighting).after_step is not Weighting.after_step
    if penalty is not None and hasattr(penalty, "begin"):
        penalty.begin(train.max_epochs * steps)

    best_score, best_state, best_epoch, best_val, stale = -math.inf, None, 0, {}, 0
    history: list[dict[str, float]] = []
    for epoch in range(1, train.max_epochs + 1):
        model.train()
        total = 0.0
        weight_sum = torch.zeros(len(names), dtype=torch.float64)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            if rep_grad:
                idx = next(stream)
                batches = dict.fromkeys(names, idx)
                value, weights = _rep_grad_step(model, shared_x, data, idx, weighting, epoch)
            else:
                batches = batcher.draw()
                by_task: dict[str, torch.Tensor] = {}
                for g in batcher.forward_groups:
                    if len(g) > 1:
                        by_task.update(_shared_losses(model, data, g, batches))
                    else:
                        by_task[g[0]] = _task_loss(model, data[g[0]], g[0], batches[g[0]], augment.get(g[0]), gen, penalty)
                task_losses = [by_task[n] for n in names]
                if scale is not None:
                    task_losses = [scale[n] * loss for n, loss in zip(names, task_losses)]
                value, weights = _backward(task_losses, weighting, shared, others, epoch)
            opt.step()
            total += value
            if weights is not None:
                weight_sum += weights.detach().to(torch.float64)
            if learns_after_step:
                # FAMO-style methods learn from how much this very step lowered each loss.
                with torch.no_grad():
                    after = torch.stack([data[n].task.loss(model(data[n].train.x[i], n), data[n].train.y[i]) for n, i in batches.items()])
                weighting.after_step(after)
        if weighting is not None:
            weighting.on_epoch_end()

        metrics, losses = _validate(model, data, one_representation)
        score = score_of(metrics, losses)
        record = {"epoch": epoch, "train_loss": total / steps, **{f"val_{n}": v for n, v in metrics.items()}}
        if weighting is not None:
            record.update({f"w_{n}": float(w) / steps for n, w in zip(names, weight_sum)})
        history.append(record)
        if score > best_score:
            best_score, best_epoch, best_val, stale = score, epoch, metrics, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        for cb in callbacks:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(epoch, train.max_epochs, record)
        if stale >= train.patience:
            break

    if best_state is None:
        undefined = sorted(n for n in names if not any(math.isfinite(h.get(f"val_{n}", math.nan)) for h in history)) or names
        metric = data[undefined[0]].task.scorer.name
        raise UndefinedMetricError(
            f"the validation metric of task '{undefined[0]}' ({metric}) was undefined at every epoch, so no epoch could be chosen "
            "(e.g. AUC on validation rows of one class); use more validation rows or another metric"
        )
    model.load_state_dict(best_state)
    return FitResult(best_epoch, epoch, time.perf_counter() - start, best_val, history)
