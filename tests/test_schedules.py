"""fastdl.schedules: the course's formulas for 100 epochs, the warm-up wrapper,
ReduceLROnPlateau's bookkeeping, and hyper-parameter checks at construction."""
import math

import numpy as np
import pytest

from fastdl import schedules as S

EPOCHS = range(100)


def test_step_decay_formula():
    s = S.StepDecay(0.1, 0.5, 10)
    for e in EPOCHS:
        assert s(e) == pytest.approx(0.1 * 0.5 ** math.floor(e / 10), rel=1e-15)
    assert [s(e) for e in (0, 9, 10, 19, 20)] == [0.1, 0.1, 0.05, 0.05, 0.025]
    s = S.StepDecay(2.0, 0.9, 3)
    for e in EPOCHS:
        assert s(e) == pytest.approx(2.0 * 0.9 ** (e // 3), rel=1e-14)


def test_exponential_decay_formula():
    s = S.ExponentialDecay(0.1, 0.05)
    for e in EPOCHS:
        assert s(e) == pytest.approx(0.1 * math.exp(-0.05 * e), rel=1e-15)
    assert s(0) == 0.1 and S.ExponentialDecay(0.3, 0.0)(50) == 0.3


def test_cosine_annealing_formula():
    s = S.CosineAnnealing(0.1, 0.001, 100)
    for e in EPOCHS:
        want = 0.001 + 0.5 * (0.1 - 0.001) * (1 + math.cos(math.pi * e / 100))
        assert s(e) == pytest.approx(want, rel=1e-14)
    assert s(0) == pytest.approx(0.1) and s(50) == pytest.approx(0.0505)
    assert s(100) == pytest.approx(0.001) and s(150) == 0.001  # held at lr_min after the anneal
    lrs = [s(e) for e in EPOCHS]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_epochs_beyond_floats_take_the_formulas_limits():
    # 10**400 raised OverflowError (int to float) from an epoch the checks accepted
    big = 10**400
    assert S.StepDecay(0.1, 0.5, 3)(big) == 0.0 and S.StepDecay(0.1, 1.0, 3)(big) == 0.1
    assert S.ExponentialDecay(0.1, 1e-300)(big) == 0.0
    assert S.ExponentialDecay(0.1, 0.0)(big) == 0.1
    assert S.CosineAnnealing(0.1, 0.01, 10)(big) == 0.01


def test_numpy_ints_are_epochs():
    assert S.StepDecay(1.0, 0.5, 2)(np.int64(4)) == 0.25


def test_linear_warmup():
    inner = S.CosineAnnealing(0.1, 0.0, 50)
    s = S.LinearWarmup(inner, 5, start_factor=0.2)
    for e in range(5):
        assert s(e) == pytest.approx(0.1 * (0.2 + 0.8 * e / 5), rel=1e-14)
    for e in range(5, 100):
        assert s(e) == inner(e - 5)  # the wrapped schedule starts when the warm-up ends
    const = S.LinearWarmup(0.01, 4)
    assert [const(e) for e in range(6)] == pytest.approx(
        [0.001, 0.001 + 0.009 / 4, 0.001 + 0.009 / 2, 0.001 + 0.009 * 3 / 4, 0.01, 0.01])
    lrs = [S.LinearWarmup(1.0, 10)(e) for e in range(10)]
    assert all(a < b for a, b in zip(lrs, lrs[1:]))


def test_reduce_on_plateau_min():
    s = S.ReduceLROnPlateau(1.0, patience=3, factor=0.5, min_lr=0.2)
    assert s(0) == 1.0
    # improving: no change
    for v in [5.0, 4.0, 3.0]:
        assert s.update({"loss": 9.0, "val_loss": v}) == 1.0
    # three epochs without improvement (3.0 - 1e-4 not beaten) -> halved on the third
    assert [s.update({"val_loss": v}) for v in [3.0, 2.99995, 3.5]] == [1.0, 1.0, 0.5]
    assert s(17) == 0.5  # the rate for the next epoch, whatever its number
    assert s.wait == 0 and s.best == 3.0
    # an improvement resets the count
    assert [s.step(v) for v in [3.5, 3.5, 2.0, 3.0, 3.0]] == [0.5] * 5
    assert s.step(3.0) == 0.25 == s.lr
    # never below min_lr
    for _ in range(10):
        s.step(10.0)
    assert s.lr == 0.2
    # NaN never improves
    s.reset()
    assert s.lr == 1.0 and s.best == math.inf
    assert [s.step(math.nan) for _ in range(3)] == [1.0, 1.0, 0.5]


def test_reduce_on_plateau_never_raises_the_rate():
    # min_lr above lr0: max(lr * factor, min_lr) raised the rate tenfold (PyTorch keeps it)
    s = S.ReduceLROnPlateau(0.01, factor=0.5, patience=1, min_lr=0.1)
    assert [s.step(v) for v in (1.0, 1.0, 1.0)] == [0.01, 0.01, 0.01]


def test_reduce_on_plateau_max_and_cooldown():
    s = S.ReduceLROnPlateau(0.1, monitor="val_accuracy", mode="max", factor=0.1, patience=2,
                            min_delta=0.0, cooldown=2)
    seq = [0.5, 0.6, 0.6, 0.55, 0.6, 0.6, 0.6, 0.6, 0.6]
    got = [s.update({"val_accuracy": v}) for v in seq]
    # reduction after two flat epochs; the cooldown's 2 epochs are not counted, then two
    # more flat ones reduce again (the Keras order counted the second cooldown epoch)
    want = [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.001, 0.001]
    assert got == pytest.approx(want)


def test_reduce_on_plateau_max_min_delta():
    # 0.52 beats 0.5 by less than min_delta: no improvement, so patience 1 reduces
    s = S.ReduceLROnPlateau(1.0, mode="max", min_delta=0.05, patience=1, factor=0.1)
    assert [s.step(v) for v in [0.5, 0.52]] == pytest.approx([1.0, 0.1])
    assert s.best == 0.5


def test_reduce_on_plateau_cooldown_epoch_is_not_counted():
    # with patience 1 an epoch counted during the cooldown would reduce at once: the
    # epoch after the reduction is in the cooldown, so the rate stays 0.1 (the test
    # above, with patience 2, cannot tell)
    s = S.ReduceLROnPlateau(1.0, patience=1, cooldown=2, factor=0.1)
    assert [s.step(v) for v in [1.0, 2.0, 2.0, 2.0, 2.0]] == \
        pytest.approx([1.0, 0.1, 0.1, 0.1, 0.01])
    # cooldown=1 skips one epoch (it skipped none: the same rates as cooldown=0)
    for c, want in [(0, [1.0, 0.1, 0.01, 0.001]), (1, [1.0, 0.1, 0.1, 0.01])]:
        s = S.ReduceLROnPlateau(1.0, patience=1, cooldown=c, factor=0.1)
        assert [s.step(v) for v in [1.0, 2.0, 2.0, 2.0]] == pytest.approx(want), c


def test_reduce_on_plateau_state_and_errors():
    s = S.ReduceLROnPlateau(1.0, patience=1)
    s.step(1.0)
    s.step(2.0)
    d = s.state_dict()
    t = S.ReduceLROnPlateau(1.0, patience=1)
    t.load_state_dict(d)
    assert (t.lr, t.best, t.wait) == (s.lr, s.best, s.wait) == (0.1, 1.0, 0)
    with pytest.raises(ValueError, match="val_loss"):
        s.update({"loss": 1.0})
    with pytest.raises(TypeError, match="val_loss"):
        s.step("1.0")
    inner = S.ReduceLROnPlateau(0.5, patience=1)
    w = S.LinearWarmup(inner, 2)
    w.update({"val_loss": 1.0})
    w.update({"val_loss": 1.0})
    assert inner.lr == pytest.approx(0.05) and w(5) == pytest.approx(0.05)


@pytest.mark.parametrize("ctor, exc, match", [
    (lambda: S.StepDecay(-0.1, 0.5, 10), ValueError, "lr0"),
    (lambda: S.StepDecay(0.1, 0.0, 10), ValueError, "drop_rate"),
    (lambda: S.StepDecay(0.1, 1.5, 10), ValueError, "drop_rate"),
    (lambda: S.StepDecay(0.1, 0.5, 0), ValueError, "epochs_drop"),
    (lambda: S.StepDecay(0.1, 0.5, 2.5), TypeError, "epochs_drop"),
    (lambda: S.StepDecay("0.1", 0.5, 2), TypeError, "lr0"),
    (lambda: S.ExponentialDecay(0.1, -0.5), ValueError, "decay_rate"),
    (lambda: S.ExponentialDecay(math.inf, 0.5), ValueError, "lr0"),
    (lambda: S.ExponentialDecay(0.1, math.nan), ValueError, "decay_rate"),
    (lambda: S.CosineAnnealing(0.1, 0.2, 10), ValueError, "lr_min"),
    (lambda: S.CosineAnnealing(0.1, -0.1, 10), ValueError, "lr_min"),
    (lambda: S.CosineAnnealing(0.1, 0.0, 0), ValueError, "epochs"),
    (lambda: S.CosineAnnealing(0.1, 0.0, True), TypeError, "epochs"),
    (lambda: S.LinearWarmup(S.StepDecay(1, 0.5, 1), 0), ValueError, "warmup_epochs"),
    (lambda: S.LinearWarmup(1.0, 3, start_factor=0.0), ValueError, "start_factor"),
    (lambda: S.LinearWarmup(-1.0, 3), ValueError, "schedule"),
    (lambda: S.LinearWarmup("cosine", 3), TypeError, "schedule"),
    (lambda: S.ReduceLROnPlateau(0.1, factor=1.0), ValueError, "factor"),
    (lambda: S.ReduceLROnPlateau(0.1, factor=0.0), ValueError, "factor"),
    (lambda: S.ReduceLROnPlateau(0.1, patience=0), ValueError, "patience"),
    (lambda: S.ReduceLROnPlateau(0.1, mode="up"), ValueError, "mode"),
    (lambda: S.ReduceLROnPlateau(0.1, min_lr=-1.0), ValueError, "min_lr"),
    (lambda: S.ReduceLROnPlateau(0.1, min_delta=-1.0), ValueError, "min_delta"),
    (lambda: S.ReduceLROnPlateau(0.1, cooldown=-1), ValueError, "cooldown"),
    (lambda: S.ReduceLROnPlateau(0.1, monitor=3), TypeError, "monitor"),
])
def test_bad_hyper_parameters(ctor, exc, match):
    with pytest.raises(exc, match=match):
        ctor()


@pytest.mark.parametrize("s", [S.StepDecay(0.1, 0.5, 2), S.ExponentialDecay(0.1, 0.1),
                               S.CosineAnnealing(0.1, 0.0, 5), S.LinearWarmup(0.1, 2),
                               S.ReduceLROnPlateau(0.1)], ids=lambda s: type(s).__name__)
def test_bad_epoch(s):
    with pytest.raises(ValueError, match="epoch"):
        s(-1)
    with pytest.raises(TypeError, match="epoch"):
        s(1.5)
    with pytest.raises(TypeError, match="epoch"):
        s(True)
    assert type(s).__name__ in repr(s)
