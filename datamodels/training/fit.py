"""Training to a fit: the recipe's ``until`` target, ``keep_checkpoints``, and what every backend records.

``until: {train_loss: L, max_epochs: E}`` (and/or ``train_accuracy: A``) trains each model until its
own training loss is at most ``L`` (and its training accuracy at least ``A`` when both are given),
checked at the end of every epoch, or until ``E`` epochs. The *training loss* here is the recipe's
loss (label smoothing included) of the model in **eval mode** (batch norm at its running
statistics) on its own training subset, without augmentation: a property of the weights, the same
number whichever backend trained them. A model stops at the first epoch end where it meets the
target; a model that reaches ``max_epochs`` first is kept, and flagged (``fit_status`` 2), never
silently mixed with the others.

Checks inside an epoch: with ``checks_per_epoch: K`` (K > 1) the fit is also checked after every
``1/K`` of an epoch's steps, in each epoch where a model may reach its target (always in the first
two; later, when the model's last epoch-to-epoch change, doubled, would carry it to the target by this
epoch's end). A model stops at the first such check that meets the target, so it lands within about
``1/K`` of an epoch's change of the target instead of a whole epoch's; the extra checks cost one
forward pass over the subset each, and are paid only in the epochs that may need them. Whether a
model may stop inside an epoch is decided from its own curve alone, so its numbers do not depend on
the other models trained beside it.

Where a model stops: ``stop_at: first`` (the default) keeps it at the first check that meets the
target, so its loss lies up to one check's drop below ``train_loss``; ``stop_at: closest`` keeps, of
that check and the check before it, the one nearer the target (by loss when ``train_loss`` is given,
else by accuracy), so the models' losses scatter around the target instead of all below it: what
matching two algorithms' mean losses needs. ``closest`` holds each live model's weights of its last
check until the next. ``stop_at: nearest`` does not stop early: every model trains to ``max_epochs``,
checked ``checks_per_epoch`` times in every epoch, and keeps the weights of its check nearest the
target over the whole run (``fit_status`` 1 when some check met the target, else 2): the sub-epoch
form of taking each model's checkpoint closest to a loss, for training whose loss jumps between
checks (high-noise SGD), where the first crossing can land far below the target.

Learning-rate schedule under ``until``: the schedule is laid over ``max_epochs`` (its step count is
``steps_per_epoch * max_epochs``), so a model that never meets the target is trained exactly as
``epochs: max_epochs`` would train it, and a model that meets it stops part-way through the schedule
(at the rate the schedule has then). ``epochs`` is not used while ``until`` is set.

``keep_checkpoints``: a list of epochs (``5``), loss levels (``{train_loss: 0.5}``: the first epoch
end at or below it), accuracy levels (``{train_accuracy: 0.9}``) or ``all`` (every epoch). Each kept
checkpoint is the model's one-model state dict with its epoch, step and training loss.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from datamodels.base.errors import UserError

NO_TARGET, REACHED, HIT_MAX = 0, 1, 2  # fit_status per model
STOP_RULES = ("first", "closest", "nearest")  # until.stop_at


def check_stop_options(prefix: str, checks_per_epoch, stop_at) -> None:
    """One-line :class:`UserError` unless ``checks_per_epoch`` is an integer >= 1 and ``stop_at`` one of
    :data:`STOP_RULES` (``prefix``: the config section named in the message)."""
    k = checks_per_epoch
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UserError(f"{prefix}.checks_per_epoch must be an integer >= 1, got {k!r}")
    if stop_at not in STOP_RULES:
        raise UserError(f"{prefix}.stop_at must be one of {', '.join(STOP_RULES)}, got {stop_at!r}")


def _positive_number(key: str, value, upper: float | None = None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or (
            upper is not None and value > upper):
        bound = f" and at most {upper}" if upper is not None else ""
        raise UserError(f"{key} must be a number > 0{bound}, got {value!r}")
    return float(value)


@dataclass
class UntilConfig:
    """Train each model until a fit target (see :mod:`datamodels.training.fit`); empty = off."""

    train_loss: float | None = field(default=None, metadata={
        "help": "stop a model at the first epoch end where its eval-mode loss on its own subset is <= this"})
    train_accuracy: float | None = field(default=None, metadata={
        "help": "stop at the first epoch end where its accuracy on its own subset is >= this, in (0, 1]"})
    max_epochs: int | None = field(default=None, metadata={
        "help": "most epochs; the learning-rate schedule is laid over max_epochs (epochs is then unused)"})
    checks_per_epoch: int = field(default=1, metadata={
        "help": "checks of the fit per epoch: 1 = epoch ends only; K > 1 also after every 1/K of an epoch's steps "
                "in the epochs where a model may reach the target, so it stops within ~1/K epoch of it"})
    stop_at: str = field(default="first", metadata={
        "help": "first (the first check meeting the target) | closest (of that check and the one before, the one "
                "nearer the target: losses scatter around it instead of below it) | nearest (no early stop: the "
                "check nearest the target over all max_epochs, checked checks_per_epoch times every epoch)"})

    def __post_init__(self):
        self.train_loss = _positive_number("until.train_loss", self.train_loss)
        self.train_accuracy = _positive_number("until.train_accuracy", self.train_accuracy, upper=1.0)
        if self.max_epochs is not None and (isinstance(self.max_epochs, bool) or not isinstance(self.max_epochs, int)
                                            or self.max_epochs < 1):
            raise UserError(f"until.max_epochs must be an integer >= 1, got {self.max_epochs!r}")
        has_target = self.train_loss is not None or self.train_accuracy is not None
        if has_target and self.max_epochs is None:
            raise UserError("until needs max_epochs beside its target, e.g. until: {train_loss: 0.3, max_epochs: 60}")
        if self.max_epochs is not None and not has_target:
            raise UserError("until.max_epochs is set without a target: give until.train_loss and/or "
                            "until.train_accuracy, or use epochs")
        check_stop_options("until", self.checks_per_epoch, self.stop_at)
        if (self.checks_per_epoch > 1 or self.stop_at != "first") and not has_target:
            key = "checks_per_epoch" if self.checks_per_epoch > 1 else "stop_at"
            raise UserError(f"until.{key} is set without a target: give until.train_loss and/or "
                            "until.train_accuracy with max_epochs")

    @property
    def active(self) -> bool:
        return self.max_epochs is not None

    def met(self, loss: torch.Tensor, acc: torch.Tensor) -> torch.Tensor:
        """``[M]`` bool: the models whose loss/accuracy ``[M]`` meet every target given."""
        ok = torch.ones_like(loss, dtype=torch.bool)
        if self.train_loss is not None:
            ok &= loss <= self.train_loss
        if self.train_accuracy is not None:
            ok &= acc >= self.train_accuracy
        return ok

    def distance(self, loss: float, acc: float) -> float:
        """How far one check's loss (or, without a loss target, accuracy) is from the target."""
        return abs(loss - self.train_loss) if self.train_loss is not None else abs(acc - self.train_accuracy)

    def may_meet(self, loss, acc, prev_loss, prev_acc) -> torch.Tensor:
        """``[M]`` bool: models whose last epoch's change (loss ``prev_loss -> loss``, accuracy likewise,
        all ``[M]``), doubled, would meet every target by the next epoch end."""
        ok = torch.ones_like(loss, dtype=torch.bool)
        if self.train_loss is not None:
            ok &= loss - 2 * (prev_loss - loss) <= self.train_loss
        if self.train_accuracy is not None:
            ok &= acc + 2 * (acc - prev_acc) >= self.train_accuracy
        return ok


def parse_checkpoints(entries, epochs: int) -> list[tuple[str, str, float]]:
    """``keep_checkpoints`` as ``[(tag, kind, value)]`` (kind epoch | train_loss | train_accuracy), or a
    one-line :class:`UserError`. ``epochs``: the most epochs a model trains (``all`` expands to them)."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise UserError(f"keep_checkpoints must be a list (epochs, {{train_loss: L}}, {{train_accuracy: A}} or "
                        f"'all'), got {entries!r}")
    out = []
    for entry in entries:
        if entry == "all":
            out.extend((f"epoch{e}", "epoch", float(e)) for e in range(1, epochs + 1))
        elif isinstance(entry, int) and not isinstance(entry, bool):
            if not 1 <= entry <= epochs:
                raise UserError(f"keep_checkpoints: epoch {entry} is outside 1..{epochs} (the epochs trained)")
            out.append((f"epoch{entry}", "epoch", float(entry)))
        elif isinstance(entry, dict) and len(entry) == 1 and next(iter(entry)) in ("train_loss", "train_accuracy"):
            kind, value = next(iter(entry.items()))
            value = _positive_number(f"keep_checkpoints.{kind}", value, upper=1.0 if kind == "train_accuracy" else None)
            out.append((f"{kind}{value:g}", kind, value))
        else:
            raise UserError(f"keep_checkpoints entry {entry!r} is not an epoch (integer), {{train_loss: L}}, "
                            f"{{train_accuracy: A}} or 'all'")
    tags = [t for t, _, _ in out]
    dup = sorted({t for t in tags if tags.count(t) > 1})
    if dup:
        raise UserError(f"keep_checkpoints names {dup[0]} twice: keep one")
    return out


def train_epochs(recipe) -> int:
    """Most epochs a model of ``recipe`` trains: ``until.max_epochs`` when a target is set, else ``epochs``."""
    return recipe.until.max_epochs if recipe.until.active else recipe.epochs


@torch.no_grad()
def subset_fit(forward, x_all, y_all, order: torch.Tensor, loss_fn, batch: int = 256):
    """Mean loss and accuracy ``([M], [M])`` (float64, CPU) of ``M`` models on their own subsets.

    ``forward(x[M, b, *input_shape]) -> logits[M, b, K]`` (the caller sets eval mode);
    ``order``: ``[M, m]`` dataset rows of each model's subset (on the data's device)."""
    n_models, m = order.shape
    total = torch.zeros(n_models, dtype=torch.float64)
    correct = torch.zeros(n_models, dtype=torch.float64)
    for start in range(0, m, batch):
        idx = order[:, start:start + batch]
        logits = forward(x_all[idx]).float()
        y = y_all[idx]
        total += loss_fn(logits.flatten(0, 1), y.flatten()).view(y.shape).double().sum(1).cpu()
        correct += (logits.argmax(-1) == y).double().sum(1).cpu()
    return total / m, correct / m


class FitTracker:
    """Per-model record of training to a fit: the loss curve at epoch ends, when each model stopped,
    and the checkpoints kept (see :mod:`datamodels.training.fit`). Used by every built-in backend.

    Attributes: ``epochs`` (most epochs), ``curve`` / ``acc_curve`` ``[M, epochs]`` (NaN where not
    evaluated; a model that stopped inside an epoch has its stopping check there), ``epochs_run`` /
    ``steps_run`` ``[M]``, ``stopped`` ``[M]`` (met the target), ``snapshots`` ``{i: state}`` (weights
    when stopped), ``checkpoints`` ``{tag: {i: (state, epoch, step, loss)}}``.

    A backend calls, per epoch: :meth:`checks_in_epoch` at its start (the steps into the epoch after
    which to measure the fit), :meth:`after_step` after each step (leaving the epoch when it returns
    True), and, unless every model has stopped, :meth:`after_epoch` at its end.
    """

    def __init__(self, recipe, n_models: int, steps_per_epoch: int):
        self.until = recipe.until
        self.epochs = train_epochs(recipe)
        self.spe = steps_per_epoch
        self.specs = parse_checkpoints(recipe.keep_checkpoints, self.epochs)
        self.curve = torch.full((n_models, self.epochs), float("nan"), dtype=torch.float64)
        self.acc_curve = self.curve.clone()
        self.epochs_run = torch.zeros(n_models, dtype=torch.int64)
        self.steps_run = torch.zeros(n_models, dtype=torch.int64)
        self.stopped = torch.zeros(n_models, dtype=torch.bool)
        self.snapshots: dict[int, dict] = {}
        self.checkpoints: dict[str, dict[int, tuple]] = {tag: {} for tag, _, _ in self.specs}
        self.inside = torch.zeros(n_models, dtype=torch.bool)  # may stop inside the current epoch
        self.checks: frozenset[int] = frozenset()  # steps into the current epoch after which the fit is measured
        self.previous: dict[int, tuple] = {}  # stop_at closest: {i: (state, epoch, step, loss, acc)} of its last check
        self.nearest: dict[int, tuple] = {}  # stop_at nearest: the same, of its check nearest the target so far
        self.crossed = torch.zeros(n_models, dtype=torch.bool)  # stop_at nearest: some check met the target

    def checks_in_epoch(self, epoch: int) -> frozenset[int]:
        """Steps into epoch ``epoch`` (0-based), strictly inside it, after which the fit is measured
        (empty when no live model may meet its target in this epoch, or ``checks_per_epoch`` is 1)."""
        self.checks = self._checks_in_epoch(epoch)
        return self.checks

    def after_step(self, epoch: int, step_in_epoch: int, measure, state) -> bool:
        """Called after each step of epoch ``epoch``: at a check inside it, ``measure()`` gives ``([M], [M])``
        loss and accuracy and the models meeting the target stop. True when every model has stopped."""
        if step_in_epoch not in self.checks:
            return False
        return self.after_check(epoch, step_in_epoch, *measure(), state)

    def _checks_in_epoch(self, epoch: int) -> frozenset[int]:
        k = self.until.checks_per_epoch
        self.inside = torch.zeros_like(self.stopped)
        if not self.until.active or k == 1:
            return frozenset()
        if epoch < 2 or self.until.stop_at == "nearest":
            self.inside = ~self.stopped
        else:
            self.inside = ~self.stopped & self.until.may_meet(
                self.curve[:, epoch - 1], self.acc_curve[:, epoch - 1],
                self.curve[:, epoch - 2], self.acc_curve[:, epoch - 2])
        if not bool(self.inside.any()):
            return frozenset()
        return frozenset(s for s in (-(-j * self.spe // k) for j in range(1, k)) if 0 < s < self.spe)

    def after_check(self, epoch: int, step_in_epoch: int, loss: torch.Tensor, acc: torch.Tensor, state) -> bool:
        """Record a check inside epoch ``epoch`` after ``step_in_epoch`` of its steps (``loss``/``acc``
        ``[M]``): the models allowed to stop inside this epoch that meet the target stop here. True when
        every model stopped."""
        self._checked(self.inside & ~self.stopped, epoch, epoch * self.spe + step_in_epoch, loss, acc, state)
        return bool(self.stopped.all())

    def _checked(self, live: torch.Tensor, epoch: int, step: int, loss, acc, state) -> None:
        """Models ``live`` (``[M]`` bool) were checked in epoch ``epoch`` after ``step`` steps in all: those
        meeting the target stop (at this check, or at their previous one when ``stop_at: closest`` and
        it is nearer the target); under ``closest`` the others remember this check."""
        met = live & self.until.met(loss.double(), acc.double())
        if self.until.stop_at == "nearest":
            self._nearest(live, met, epoch, step, loss, acc, state)
            return
        for i in torch.nonzero(met).flatten().tolist():
            here = (None, epoch, step, float(loss[i]), float(acc[i]))
            before = self.previous.pop(i, None)
            if before is not None and self.until.distance(*before[3:]) < self.until.distance(*here[3:]):
                self.curve[i, epoch] = self.acc_curve[i, epoch] = float("nan")  # the crossing check is not kept
                chosen = before
            else:
                chosen = (state(i), *here[1:])
            kept, e, s, lo, ac = chosen
            self.snapshots[i] = kept
            self.curve[i, e], self.acc_curve[i, e] = lo, ac
            self.epochs_run[i], self.steps_run[i] = e + 1, s
        self.stopped |= met
        if self.until.stop_at == "closest":
            for i in torch.nonzero(live & ~met).flatten().tolist():
                self.previous[i] = (state(i), epoch, step, float(loss[i]), float(acc[i]))

    def _nearest(self, live, met, epoch: int, step: int, loss, acc, state) -> None:
        """``stop_at: nearest``: remember each checked model's check nearest the target; after the last
        epoch's end every model is set to its nearest check (weights, curve, epochs and steps run)."""
        self.crossed |= met
        for i in torch.nonzero(live).flatten().tolist():
            here = (float(loss[i]), float(acc[i]))
            best = self.nearest.get(i)
            if best is None or self.until.distance(*here) < self.until.distance(*best[3:]):
                self.nearest[i] = (state(i), epoch, step, *here)
        if step < self.epochs * self.spe:
            return
        for i, (kept, e, s, lo, ac) in self.nearest.items():
            self.curve[i, e:] = self.acc_curve[i, e:] = float("nan")
            self.curve[i, e], self.acc_curve[i, e] = lo, ac
            self.snapshots[i] = kept
            self.epochs_run[i], self.steps_run[i] = e + 1, s
        self.stopped |= self.crossed

    def needs_eval(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (0-based) ends with an evaluation of the training fit."""
        if self.until.active or epoch == self.epochs - 1:
            return True
        return any(kind != "epoch" or int(v) == epoch + 1 for _, kind, v in self.specs)

    def after_epoch(self, epoch: int, loss: torch.Tensor | None, acc: torch.Tensor | None, state) -> bool:
        """Record epoch ``epoch``'s end for the models still training (``loss``/``acc`` ``[M]`` or None when
        not evaluated; ``state(i)``: model ``i``'s one-model state dict now). True when every model stopped."""
        live = ~self.stopped
        self.epochs_run[live] = epoch + 1
        self.steps_run[live] = (epoch + 1) * self.spe
        if loss is None:
            return False
        self.curve[live, epoch] = loss.double()[live]
        self.acc_curve[live, epoch] = acc.double()[live]
        for tag, kind, value in self.specs:
            kept = self.checkpoints[tag]
            for i in torch.nonzero(live).flatten().tolist():
                if i in kept:
                    continue
                hit = (int(value) == epoch + 1 if kind == "epoch" else
                       float(loss[i]) <= value if kind == "train_loss" else float(acc[i]) >= value)
                if hit:
                    kept[i] = (state(i), epoch + 1, (epoch + 1) * self.spe, float(loss[i]))
        if self.until.active:
            self._checked(live, epoch, (epoch + 1) * self.spe, loss, acc, state)
        return bool(self.stopped.all())

    def final_loss(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``([M], [M])`` training loss and accuracy at each model's last epoch."""
        last = (self.epochs_run - 1).clamp(min=0).unsqueeze(1)
        return self.curve.gather(1, last).squeeze(1), self.acc_curve.gather(1, last).squeeze(1)

    def status(self) -> torch.Tensor:
        """``[M]`` uint8 fit status: 0 no target, 1 met the target, 2 reached max_epochs first."""
        if not self.until.active:
            return torch.zeros(len(self.stopped), dtype=torch.uint8)
        return torch.where(self.stopped, REACHED, HIT_MAX).to(torch.uint8)


@dataclass
class FitRecord:
    """What a backend reports about the fit of its ``M`` models (row ``i`` = model ``i``)."""

    train_loss: torch.Tensor  # [M] float64 final training loss (eval mode, own subset)
    train_accuracy: torch.Tensor  # [M] float64
    epochs_run: torch.Tensor  # [M] int64, -1 unknown (a train_fn that did not say)
    steps_run: torch.Tensor  # [M] int64, -1 unknown
    status: torch.Tensor  # [M] uint8 (NO_TARGET | REACHED | HIT_MAX)
    curve: torch.Tensor  # [M, epochs] float64, NaN where not evaluated
    checkpoints: dict = field(default_factory=dict)  # {tag: {i: (state, epoch, step, loss)}}

    @classmethod
    def of(cls, tracker: FitTracker) -> "FitRecord":
        loss, acc = tracker.final_loss()
        return cls(loss, acc, tracker.epochs_run.clone(), tracker.steps_run.clone(), tracker.status(),
                   tracker.curve, tracker.checkpoints)

    @classmethod
    def stack(cls, records: list["FitRecord"]) -> "FitRecord":
        """One record of several groups' records, in order (checkpoint rows renumbered)."""
        cps, offset = {}, 0
        for r in records:
            for tag, kept in r.checkpoints.items():
                cps.setdefault(tag, {}).update({offset + i: v for i, v in kept.items()})
            offset += len(r.train_loss)
        cat = lambda name: torch.cat([getattr(r, name) for r in records])  # noqa: E731
        return cls(cat("train_loss"), cat("train_accuracy"), cat("epochs_run"), cat("steps_run"), cat("status"),
                   cat("curve"), cps)
