"""fastdl.metrics: the confusion-matrix kernel in every backend against the reference
and scikit-learn; every metric, average and zero_division against scikit-learn (with
labels=range(C)) on random label sets and on the edge cases; specificity and npv
against scikit-learn's recall and precision of the complementary class; the report
text; bad input."""
import re
import warnings

import numpy as np
import pytest
import sklearn.metrics as skm
from hypothesis import given, settings, strategies as st

from fastdl import metrics as M
from fastdl._registry import kernel
from conftest import BACKENDS, layouts, rng

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")

AVGS = ("micro", "macro", "weighted", None)
ZDS = (0.0, 1.0, np.nan)


def labels(n, c, seed=0):
    r = rng(seed)
    return r.integers(0, c, n), r.integers(0, c, n)


def same(a, b):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                               rtol=1e-12, atol=1e-15, equal_nan=True)


# ------------------------------------------------------------------ confusion matrix

@pytest.mark.parametrize("n, c", [(0, 3), (1, 1), (1, 4), (17, 3), (1000, 10),
                                  (70001, 7)], ids=str)
def test_confusion_matrix_matches_reference_and_sklearn(backend, n, c):
    yt, yp = labels(n, c, seed=n)
    ref = M.confusion_matrix(yt, yp, num_classes=c, backend="numpy")
    got = M.confusion_matrix(yt, yp, num_classes=c, backend=backend)
    assert got.dtype == np.int64 and got.shape == (c, c) and got.flags.c_contiguous
    np.testing.assert_array_equal(got, ref)
    if n:  # scikit-learn refuses empty label arrays
        np.testing.assert_array_equal(ref, skm.confusion_matrix(yt, yp, labels=range(c)))
    assert got.sum() == n


def test_confusion_matrix_reference_closed_form():
    yt = np.array([0, 0, 1, 2, 2, 2])
    yp = np.array([0, 1, 1, 2, 0, 2])
    out = np.full((3, 3), -5, np.int64)  # the kernel overwrites, never accumulates
    kernel("confusion_matrix", "numpy")(yt, yp, out)
    np.testing.assert_array_equal(out, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


def test_confusion_matrix_kernels_overwrite(backend):
    yt, yp = labels(50, 4, seed=3)
    out = np.full((4, 4), 99, np.int64)
    kernel("confusion_matrix", backend)(yt, yp, out)
    np.testing.assert_array_equal(out, skm.confusion_matrix(yt, yp, labels=range(4)))


@pytest.mark.parametrize("dt", [np.int8, np.uint8, np.int16, np.uint32, np.int32, np.int64,
                                np.uint64])
def test_confusion_matrix_label_dtypes(backend, dt):
    yt, yp = labels(40, 5, seed=1)
    got = M.confusion_matrix(yt.astype(dt), yp.astype(dt), backend=backend)
    np.testing.assert_array_equal(got, skm.confusion_matrix(yt, yp, labels=range(5)))


def test_confusion_matrix_layouts_lists_bools_readonly(backend):
    yt, yp = labels(30, 3, seed=2)
    want = skm.confusion_matrix(yt, yp, labels=range(3))
    for layout, a in layouts(yt).items():
        b = layouts(yp)[layout]
        np.testing.assert_array_equal(M.confusion_matrix(a, b, backend=backend), want)
    np.testing.assert_array_equal(M.confusion_matrix(list(yt), tuple(yp), backend=backend),
                                  want)
    np.testing.assert_array_equal(M.confusion_matrix([True, False, True], [True, True, False],
                                                     backend=backend), [[0, 1], [1, 1]])
    yt.setflags(write=False)
    yp.setflags(write=False)
    copies = yt.copy(), yp.copy()
    np.testing.assert_array_equal(M.confusion_matrix(yt, yp, backend=backend), want)
    np.testing.assert_array_equal(yt, copies[0])
    np.testing.assert_array_equal(yp, copies[1])


def test_confusion_matrix_sizes_and_out(backend):
    # C is 1 + the largest label of either array, or num_classes
    assert M.confusion_matrix([0, 1], [3, 0], backend=backend).shape == (4, 4)
    assert M.confusion_matrix([0, 1], [1, 0], num_classes=6, backend=backend).shape == (6, 6)
    assert M.confusion_matrix([], [], backend=backend).shape == (0, 0)
    np.testing.assert_array_equal(M.confusion_matrix([], [], num_classes=2, backend=backend),
                                  np.zeros((2, 2)))
    out = np.full((3, 3), 7, np.int64)
    res = M.confusion_matrix([0, 2], [2, 2], num_classes=3, out=out, backend=backend)
    assert res is out
    np.testing.assert_array_equal(out, [[0, 0, 1], [0, 0, 0], [0, 0, 1]])


@pytest.mark.parametrize("kw, exc, match", [
    (dict(y_true=[0.0, 1.0], y_pred=[0, 1]), TypeError, "y_true"),
    (dict(y_true=[0, 1], y_pred=np.array([0.5, 1.0])), TypeError, "y_pred"),
    (dict(y_true=["a", "b"], y_pred=[0, 1]), TypeError, "y_true"),
    (dict(y_true=None, y_pred=[0, 1]), TypeError, "y_true"),
    (dict(y_true=[[0, 1]], y_pred=[[0, 1]]), ValueError, "y_true"),
    (dict(y_true=3, y_pred=3), ValueError, "y_true"),
    (dict(y_true=[0, 1, 1], y_pred=[0, 1]), ValueError, "y_pred"),
    (dict(y_true=[0, -1], y_pred=[0, 1]), ValueError, "y_true"),
    (dict(y_true=[0, 1], y_pred=[0, -3]), ValueError, "y_pred"),
    (dict(y_true=[0, 3], y_pred=[0, 1], num_classes=3), ValueError, "y_true"),
    (dict(y_true=[0, 1], y_pred=[0, 5], num_classes=3), ValueError, "y_pred"),
    (dict(y_true=[0, 1], y_pred=[0, 1], num_classes=0), ValueError, "num_classes"),
    (dict(y_true=[0, 1], y_pred=[0, 1], num_classes=2.0), TypeError, "num_classes"),
    (dict(y_true=np.array([0, 2**63], np.uint64), y_pred=[0, 1]), ValueError, "y_true"),
    (dict(y_true=[0, 1], y_pred=[0, 1], out=np.zeros((2, 2))), TypeError, "out"),
    (dict(y_true=[0, 1], y_pred=[0, 1], out=np.zeros((3, 3), np.int64)), ValueError, "out"),
])
def test_confusion_matrix_bad_input(backend, kw, exc, match):
    with pytest.raises(exc, match=match):
        M.confusion_matrix(**kw, backend=backend)


# ------------------------------------------------------------------ scores vs sklearn

def nanavg(v, w=None):
    """scikit-learn's average: nan values skipped; all-zero weights give the plain mean."""
    keep = ~np.isnan(v)
    if not keep.any():
        return np.nan
    if w is not None and w[keep].sum() > 0:
        return np.average(v[keep], weights=w[keep])
    return v[keep].mean()


def ratio(num, den, zd):
    num, den = np.asarray(num, float), np.asarray(den, float)
    return np.where(den > 0, num / np.where(den > 0, den, 1), zd)


def check_against_sklearn(yt, yp, c, zd, beta, averages=AVGS, backend="numpy"):
    """Every metric and the given averages against scikit-learn with labels=range(C).
    (scikit-learn calls cost ~10 ms each here: they are kept few.)"""
    labels_ = list(range(c))
    base = dict(zero_division=zd, num_classes=c, backend=backend)
    for avg in averages:
        p, r, f, _ = skm.precision_recall_fscore_support(yt, yp, labels=labels_, average=avg,
                                                         zero_division=zd)
        fb = skm.fbeta_score(yt, yp, beta=beta, labels=labels_, average=avg, zero_division=zd)
        same(M.precision(yt, yp, average=avg, **base), p)
        same(M.recall(yt, yp, average=avg, **base), r)
        same(M.f1(yt, yp, average=avg, **base), f)
        same(M.fbeta(yt, yp, beta, average=avg, **base), fb)
    # accuracy: the fraction correct, and per class the recall (computed above as r when
    # average None was checked; recomputed here from the counts)
    acc = skm.accuracy_score(yt, yp)
    for avg in ("binary", "micro", "weighted"):
        same(M.accuracy(yt, yp, average=avg, **base), acc)
    # specificity and npv from scikit-learn's one-vs-rest counts [[tn, fp], [fn, tp]]
    mcm = skm.multilabel_confusion_matrix(yt, yp, labels=labels_)
    tn, fp, fn, tp = mcm[:, 0, 0], mcm[:, 0, 1], mcm[:, 1, 0], mcm[:, 1, 1]
    support = tp + fn
    per_acc = ratio(tp, support, zd)
    same(M.accuracy(yt, yp, average=None, **base), per_acc)
    same(M.accuracy(yt, yp, average="macro", **base), nanavg(per_acc))
    for name, num, den in (("specificity", tn, tn + fp), ("npv", tn, tn + fn)):
        f = getattr(M, name)
        per_class = ratio(num, den, zd)
        same(f(yt, yp, average=None, **base), per_class)
        same(f(yt, yp, average="macro", **base), nanavg(per_class))
        same(f(yt, yp, average="weighted", **base), nanavg(per_class, support))
        same(f(yt, yp, average="micro", **base), ratio(num.sum(), den.sum(), zd))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), c=st.integers(1, 6), extra=st.integers(0, 2),
       zd=st.sampled_from(ZDS), beta=st.sampled_from([0.5, 1.0, 2.0, 3.7]),
       avg=st.sampled_from(AVGS), seed=st.integers(0, 2**31), be=st.sampled_from(BACKENDS))
def test_property_scores_match_sklearn(n, c, extra, zd, beta, avg, seed, be):
    # labels drawn from fewer classes than C (extra > 0) leave classes absent and
    # never predicted, so zero_division is exercised
    r = rng(seed)
    yt, yp = r.integers(0, c, n), r.integers(0, c, n)
    check_against_sklearn(yt, yp, c + extra, zd, beta, averages=(avg,), backend=be)


@pytest.mark.parametrize("zd", ZDS)
@pytest.mark.parametrize("case", ["never_predicted", "never_present", "single_class",
                                  "all_wrong", "perfect", "one_sample"])
def test_edge_cases_match_sklearn(case, zd):
    yt, yp, c = {
        "never_predicted": ([0, 1, 2, 2, 1], [0, 1, 1, 1, 0], 3),
        "never_present": ([0, 0, 1, 1], [0, 2, 1, 2], 3),
        "single_class": ([0, 0, 0], [0, 0, 0], 1),
        "all_wrong": ([0, 1, 2, 0], [1, 2, 0, 2], 4),
        "perfect": ([2, 0, 1, 3, 3], [2, 0, 1, 3, 3], 4),
        "one_sample": ([1], [0], 2),
    }[case]
    check_against_sklearn(np.array(yt), np.array(yp), c, zd, 2.0)


def test_specificity_npv_are_recall_precision_of_the_rest():
    # an oracle independent of any confusion matrix: binarise "not class k"
    yt, yp = labels(60, 4, seed=8)
    spec = [skm.recall_score(yt != k, yp != k) for k in range(4)]
    npv = [skm.precision_score(yt != k, yp != k) for k in range(4)]
    same(M.specificity(yt, yp, average=None), spec)
    same(M.npv(yt, yp, average=None), npv)


@pytest.mark.parametrize("zd", ZDS)
@pytest.mark.parametrize("pos_label", [0, 1])
@pytest.mark.parametrize("yt, yp", [
    ([0, 1, 1, 0, 1], [0, 1, 0, 0, 1]),
    ([0, 0, 0], [0, 0, 0]),          # no positive at all: pos_label=1 is an empty class
    ([1, 1], [1, 0]),
    ([0, 1], [1, 1]),
])
def test_binary_matches_sklearn(yt, yp, pos_label, zd):
    yt, yp = np.array(yt), np.array(yp)
    kw = dict(pos_label=pos_label, zero_division=zd)
    neg = 1 - pos_label
    p, r, f, _ = skm.precision_recall_fscore_support(yt, yp, average="binary", **kw)
    want = {"precision": p, "recall": r, "f1": f, "accuracy": skm.accuracy_score(yt, yp),
            # specificity of the positive class = recall of the negative one; npv likewise
            "specificity": skm.recall_score(yt, yp, pos_label=neg, zero_division=zd),
            "npv": skm.precision_score(yt, yp, pos_label=neg, zero_division=zd)}
    fb = skm.fbeta_score(yt, yp, beta=0.5, average="binary", **kw)
    for be in BACKENDS:
        for name, value in want.items():
            same(getattr(M, name)(yt, yp, backend=be, **kw), value)
        same(M.fbeta(yt, yp, 0.5, backend=be, **kw), fb)


def test_closed_forms():
    # M = [[3, 1], [2, 4]]: tp=4, fp=1, fn=2, tn=3 for class 1
    yt = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    yp = [0, 0, 0, 1, 0, 0, 1, 1, 1, 1]
    np.testing.assert_array_equal(M.confusion_matrix(yt, yp), [[3, 1], [2, 4]])
    assert M.precision(yt, yp) == pytest.approx(4 / 5)
    assert M.recall(yt, yp) == pytest.approx(4 / 6)
    assert M.specificity(yt, yp) == pytest.approx(3 / 4)
    assert M.npv(yt, yp) == pytest.approx(3 / 5)
    assert M.f1(yt, yp) == pytest.approx(2 * 4 / (2 * 4 + 1 + 2))
    assert M.fbeta(yt, yp, 2.0) == pytest.approx(5 * 4 / (5 * 4 + 4 * 2 + 1))
    assert M.accuracy(yt, yp) == pytest.approx(7 / 10)
    # weighted specificity is weighted by support (4 and 6)
    spec = M.specificity(yt, yp, average=None)
    np.testing.assert_allclose(spec, [4 / 6, 3 / 4])
    assert M.specificity(yt, yp, average="weighted") == pytest.approx((4 * 4 / 6 + 6 * 3 / 4) / 10)
    assert M.specificity(yt, yp, average="micro") == pytest.approx((4 + 3) / (6 + 4))


def test_accuracy_natural_form_and_balanced():
    yt, yp = labels(200, 5, seed=4)
    assert M.accuracy(yt, yp) == pytest.approx(skm.accuracy_score(yt, yp))  # any C
    assert M.accuracy(yt, yp, average="macro") == pytest.approx(
        skm.balanced_accuracy_score(yt, yp))
    assert isinstance(M.accuracy(yt, yp), float)
    assert M.precision(yt, yp, average=None).dtype == np.float64


def test_every_backend_gives_the_same_scores(backend):
    yt, yp = labels(300, 6, seed=5)
    for name in ("accuracy", "precision", "recall", "specificity", "npv", "f1"):
        for avg in AVGS:
            same(getattr(M, name)(yt, yp, average=avg, backend=backend),
                 getattr(M, name)(yt, yp, average=avg, backend="numpy"))


def test_scores_leave_inputs_unchanged():
    yt, yp = labels(20, 3, seed=6)
    yt.setflags(write=False)
    copy = yt.copy()
    M.f1(yt, yp, average="macro")
    np.testing.assert_array_equal(yt, copy)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: M.precision([0, 1], [0, 1], average="mean"), ValueError, "average"),
    (lambda: M.precision([0, 1], [0, 1], average="samples"), ValueError, "average"),
    (lambda: M.accuracy([0, 1], [0, 1], average=["macro"]), ValueError, "average"),
    (lambda: M.recall([0, 1, 2], [0, 1, 2]), ValueError, "average"),
    (lambda: M.recall([0, 1], [0, 1], num_classes=3), ValueError, "average"),
    (lambda: M.recall([0, 1], [0, 1], pos_label=2), ValueError, "pos_label"),
    (lambda: M.recall([0, 0], [0, 0], pos_label=1, num_classes=1), ValueError, "pos_label"),
    (lambda: M.recall([0, 1], [0, 1], pos_label=-1), ValueError, "pos_label"),
    (lambda: M.recall([0, 1], [0, 1], pos_label=1.0), TypeError, "pos_label"),
    (lambda: M.fbeta([0, 1], [0, 1], 0.0), ValueError, "beta"),
    (lambda: M.fbeta([0, 1], [0, 1], -1.0), ValueError, "beta"),
    (lambda: M.fbeta([0, 1], [0, 1], np.inf), ValueError, "beta"),
    (lambda: M.fbeta([0, 1], [0, 1], np.nan), ValueError, "beta"),
    (lambda: M.fbeta([0, 1], [0, 1], 1e160), ValueError, "beta"),  # beta^2 inf: it read nan
    (lambda: M.fbeta([0, 1], [0, 1], "2"), TypeError, "beta"),
    (lambda: M.f1([0, 1], [0, 1], zero_division=0.5), ValueError, "zero_division"),
    (lambda: M.f1([0, 1], [0, 1], zero_division="warn"), TypeError, "zero_division"),
    (lambda: M.f1([0, 1], [0, 1], zero_division=True), TypeError, "zero_division"),
    (lambda: M.npv([], []), ValueError, "y_true"),
    (lambda: M.npv([0, 1], [0.0, 1.0]), TypeError, "y_pred"),
    (lambda: M.specificity([0, 1], [0, 1, 1]), ValueError, "y_pred"),
    (lambda: M.specificity([0, 4], [0, 1], average="macro", num_classes=3), ValueError,
     "y_true"),
    (lambda: M.classification_report([], []), ValueError, "y_true"),
    (lambda: M.classification_report([0, 1], [0, 1], target_names=["a"]), ValueError,
     "target_names"),
    (lambda: M.classification_report([0, 1], [0, 1], digits=-1), ValueError, "digits"),
    (lambda: M.classification_report([0, 1], [0, 1], zero_division=2), ValueError,
     "zero_division"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ------------------------------------------------------------------ report

def sk_int_support(text):
    """scikit-learn prints the supports as floats ("1.0") when no prediction at all is
    right (its multilabel_confusion_matrix then starts from float zeros); fastdl always
    prints them as integers.  Rewrite the float supports of a scikit-learn report."""
    return re.sub(r"( +)(\d+)\.0$", lambda m: m.group(1) + "  " + m.group(2), text,
                  flags=re.M)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 60), c=st.integers(1, 12), extra=st.integers(0, 2),
       digits=st.integers(0, 5), zd=st.sampled_from(ZDS), seed=st.integers(0, 2**31))
def test_property_report_matches_sklearn(n, c, extra, digits, zd, seed):
    r = rng(seed)
    yt, yp = r.integers(0, c, n), r.integers(0, c, n)
    labels_ = list(range(c + extra))
    want = skm.classification_report(yt, yp, labels=labels_, digits=digits, zero_division=zd)
    if not (yt == yp).any():
        want = sk_int_support(want)
    assert M.classification_report(yt, yp, num_classes=c + extra, digits=digits,
                                   zero_division=zd) == want


def test_report_names_and_dict():
    yt, yp = labels(80, 3, seed=7)
    names = ["cat", "dog", "a rather long class name"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = skm.classification_report(yt, yp, labels=[0, 1, 2], target_names=names)
        want_d = skm.classification_report(yt, yp, labels=[0, 1, 2], output_dict=True)
    assert M.classification_report(yt, yp, target_names=names) == want
    got_d = M.classification_report(yt, yp, output_dict=True)
    assert got_d.keys() == want_d.keys()
    assert got_d["accuracy"] == pytest.approx(want_d["accuracy"])
    for key in ("0", "1", "2", "macro avg", "weighted avg"):
        for field, v in want_d[key].items():
            assert got_d[key][field] == pytest.approx(v), (key, field)
    text = M.classification_report(yt, yp)
    assert "accuracy" in text and "macro avg" in text and "weighted avg" in text
