"""The training engine: the one loop every strategy trains through.

AdamW over the trainable parameters (optionally in groups with their own learning
rates), batches from every task at each step (one forward pass for tasks on the same
inputs), task losses combined by a weighting method (a plain sum by default), early
stopping on a validation criterion, best-state restore. Randomness (batch order,
dropout) comes from the run's seed only, so the same seed gives the same numbers on CPU
(and on one CUDA device type, with :func:`~polytask.training.devices.set_deterministic`).

The model, the training and validation tensors and the weighting method's state live on
``train.device``; forward passes run under ``train.precision`` (autocast), evaluation in
float32. Nothing is read back to the host per step: the divergence check reads the running
loss sum every :data:`~polytask.training.steps.CHECK_EVERY` steps.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from polytask.config import TrainConfig
from polytask.core.errors import PolytaskWarning, UndefinedMetricError
from polytask.core.targets import labelled_rows, task_loss
from polytask.data.prepare import PreparedTask
from polytask.methods.weighting.base import Weighting
from polytask.training import distributed
from polytask.training.batches import _batches, _Rows, same_input_groups
from polytask.training.budget import check_budget
from polytask.training.devices import autocast, grad_scaler, resolve_device, set_deterministic, tasks_to
from polytask.training.evaluate import EVAL_BATCH, Predictions, _criterion, _validate, evaluate, predict
from polytask.training.sampling import batch_plan
from polytask.training.steps import CHECK_EVERY, _backward, _check_rep_grad, _rep_grad_step, _shared_losses, _shared_params, _task_loss, check_finite

# Evaluation, batching and step helpers live in their own modules; these names stay
# importable from here.
__all__ = ["EVAL_BATCH", "FitResult", "Predictions", "evaluate", "fit", "predict", "same_input_groups", "seed_everything"]


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


def _shard(batches: dict[str, torch.Tensor], data: dict[str, PreparedTask], shards: distributed.Shards):
    """This process's rows of each task's global batch (a batch several tasks share stays
    shared), and each task's share: labelled rows here over labelled rows in the batch."""
    taken: dict[int, torch.Tensor] = {}
    local, share = {}, {}
    for name, idx in batches.items():
        if id(idx) not in taken:
            taken[id(idx)] = shards.take(idx)
        local[name] = taken[id(idx)]
        y = data[name].train.y
        mine = labelled_rows(data[name].task, y[local[name]]).sum()
        share[name] = mine / labelled_rows(data[name].task, y[idx]).sum().clamp_min(1)
    return local, share


def seed_everything(seed: int) -> None:
    """Fix torch's global generator (initialization, dropout) for this process."""
    torch.manual_seed(seed)


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
    device = resolve_device(train.device)
    set_deterministic(device)
    # Batch order is drawn on the CPU whatever the device, so a seed orders rows alike everywhere.
    gen = torch.Generator().manual_seed(seed)
    model.to(device)
    data = tasks_to(data, device)
    if weighting is not None:
        weighting.to(device)
    if isinstance(penalty, nn.Module):
        penalty.to(device)
    scaler = grad_scaler(device, train.precision)
    shards = distributed.current()
    if shards is not None and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        if device.type == "cuda":
            nn.SyncBatchNorm.convert_sync_batchnorm(model)  # batch statistics over the global batch
        else:
            warnings.warn(
                "BatchNorm statistics are computed per process on the CPU (SyncBatchNorm needs CUDA): "
                "the model differs from one process's; the study's verdicts still compare alike",
                PolytaskWarning,
                stacklevel=2,
            )
    if shards is not None and rep_grad:
        raise ValueError("rep_grad takes every task's gradient on one shared batch; it does not run across processes")
    if scaler is not None and rep_grad:
        raise ValueError("rep_grad does not combine with 16-mixed precision (no loss scaling on the representation): use bf16-mixed or 32")
    names = list(data)
    augment = {n: a for n, a in (augment or {}).items() if a is not None and n in data}
    if penalty is not None and weighting is not None:
        raise ValueError("a penalty adds to one objective; it does not combine with a multi-task weighting method")
    if weighting is not None and weighting.representation_only and not rep_grad:
        raise ValueError(f"'{weighting.name}' balances gradients of the shared representation: pass rep_grad=True")
    # One representation read by every head: tasks on the same inputs share forward passes.
    one_representation = getattr(model, "shares_representation", False) and penalty is None
    labelled = {n: int(labelled_rows(data[n].task, data[n].train.y).sum()) for n in names}
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
    own: list[torch.Tensor] = []
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
    # The penalty's own parameters (a penalty never comes with a weighting method) follow the
    # heads: their gradients are summed across processes like the model's.
    others = [p for p in model.parameters() if p.requires_grad and all(p is not q for q in shared)] + own
    learns_after_step = weighting is not None and type(weighting).after_step is not Weighting.after_step
    if penalty is not None and hasattr(penalty, "begin"):
        penalty.begin(train.max_epochs * steps)

    def cast():
        return autocast(device, train.precision)

    # Running sums stay on the device (float64 where it has it: the same sums as on the CPU).
    wide = torch.float32 if device.type == "mps" else torch.float64
    best_score, best_state, best_epoch, best_val, stale = -math.inf, None, 0, {}, 0
    history: list[dict[str, float]] = []
    for epoch in range(1, train.max_epochs + 1):
        model.train()
        running = torch.zeros((), dtype=wide, device=device)
        weight_sum = torch.zeros(len(names), dtype=wide, device=device)
        for step in range(steps):
            opt.zero_grad(set_to_none=True)
            if rep_grad:
                idx = next(stream)
                batches = dict.fromkeys(names, idx)
                value, weights = _rep_grad_step(model, shared_x, data, idx, weighting, cast)
            else:
                batches = batcher.draw()
                local, share = (batches, None) if shards is None else _shard(batches, data, shards)
                by_task: dict[str, torch.Tensor] = {}
                with cast():
                    for g in batcher.forward_groups:
                        if len(g) > 1:
                            by_task.update(_shared_losses(model, data, g, local))
                        else:
                            by_task[g[0]] = _task_loss(model, data[g[0]], g[0], local[g[0]], augment.get(g[0]), gen, penalty)
                task_losses = [by_task[n].float() for n in names]
                if share is not None:
                    task_losses = [share[n] * loss for n, loss in zip(names, task_losses)]
                if scale is not None:
                    task_losses = [scale[n] * loss for n, loss in zip(names, task_losses)]
                value, weights = _backward(task_losses, weighting, shared, others, scaler, shards)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            running += value.to(wide)
            if (step + 1) % CHECK_EVERY == 0 or step + 1 == steps:
                check_finite(running, epoch)
                check_budget()
            if weights is not None:
                weight_sum += weights.detach().to(wide)
            if learns_after_step:
                # FAMO-style methods learn from how much this very step lowered each loss.
                with torch.no_grad(), cast():
                    after = torch.stack([task_loss(data[n].task, model(data[n].train.x[i], n), data[n].train.y[i]).float() for n, i in batches.items()])
                weighting.after_step(after)
        if weighting is not None:
            weighting.on_epoch_end()

        metrics, losses = _validate(model, data, one_representation)
        score = score_of(metrics, losses)
        if shards is not None:
            shards.sum_(running)  # each process summed its shares: the global batches' losses
        record = {"epoch": epoch, "train_loss": running.item() / steps, **{f"val_{n}": v for n, v in metrics.items()}}
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
