"""Tests of the LFW verification protocol (nullswap.verification)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nullswap.errors import InputError, NullswapError
from nullswap.verification import (
    LFWPair,
    MissingEmbeddingError,
    PairsFileError,
    best_threshold,
    flatten_folds,
    lfw_image_path,
    pair_scores,
    read_lfw_pairs,
    roc_auc,
    tar_at_far,
    ten_fold_verification,
    unique_images,
)

# ----------------------------------------------------------------------------------------------------------------------
# brute-force references
# ----------------------------------------------------------------------------------------------------------------------


def brute_auc(s: np.ndarray, y: np.ndarray) -> float:
    pos, neg = s[y][:, None], s[~y][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def brute_best_accuracy(s: np.ndarray, y: np.ndarray) -> float:
    u = np.unique(s)
    cands = np.concatenate(([u[0] - 1], (u[:-1] + u[1:]) / 2, [u[-1] + 1]))
    return max(float(((s > t) == y).mean()) for t in cands)


# ----------------------------------------------------------------------------------------------------------------------
# threshold choice, hand-computed
# ----------------------------------------------------------------------------------------------------------------------


def test_two_folds_by_hand():
    # fold 0: 0.9+ 0.7+ 0.3- 0.1-   fold 1: 0.8+ 0.6+ 0.65- 0.2-
    scores = np.array([0.9, 0.7, 0.3, 0.1, 0.8, 0.6, 0.65, 0.2])
    labels = np.array([1, 1, 0, 0, 1, 1, 0, 0], dtype=bool)
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    r = ten_fold_verification(scores, labels, folds, far=None)
    # test fold 0, train on fold 1: candidates 0.4 and 0.725 both give 3/4; the lowest (0.4) wins; fold 0 at 0.4: 4/4
    # test fold 1, train on fold 0 (separable): 0.5; fold 1 at 0.5 accepts the 0.65 impostor: 3/4
    assert r.fold_thresholds == pytest.approx([0.4, 0.5])
    assert r.fold_accuracies == pytest.approx([1.0, 0.75])
    assert r.mean_accuracy == pytest.approx(0.875)
    assert r.std_accuracy == pytest.approx(0.125)  # population std; the sample std would be 0.1768
    assert r.std_ddof == 0
    assert r.mean_threshold == pytest.approx(0.45)
    # all 8: rejecting {0.1,0.2,0.3} (t=0.45) or also {0.6,0.65} (t=0.675) both give 7/8; lowest wins
    assert r.best_threshold == pytest.approx(0.45)
    assert r.best_threshold_accuracy == pytest.approx(7 / 8)
    assert r.auc == pytest.approx(15 / 16)  # only 0.6+ < 0.65- is out of order
    assert (r.n_pairs, r.n_matched, r.n_mismatched, r.n_folds) == (8, 4, 4, 2)
    assert r.tar_at_far is None


def test_best_threshold_extremes():
    # all positives: rejecting nothing is best -> threshold below the minimum, one average gap away
    t, acc = best_threshold([0.2, 0.4, 0.6], [True, True, True])
    assert acc == 1.0 and t == pytest.approx(0.0)
    t, acc = best_threshold([0.2, 0.4, 0.6], [False, False, False])
    assert acc == 1.0 and t == pytest.approx(0.8)
    # ties inside a score: two pairs at 0.5, one of each class
    t, acc = best_threshold([0.1, 0.5, 0.5, 0.9], [False, True, False, True])
    assert acc == 0.75 and t == pytest.approx(0.3)


def test_threshold_is_strict_and_fold_ids_arbitrary():
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3])
    labels = np.array([1, 0, 1, 0, 1, 0], dtype=bool)
    r = ten_fold_verification(scores, labels, np.array([7, 7, -2, -2, 40, 40]), far=None)
    assert r.n_folds == 3
    assert r.fold_accuracies == [1.0, 1.0, 1.0]


def test_perfectly_separable():
    rng = np.random.default_rng(0)
    n = 600
    folds = np.repeat(np.arange(10), n // 10)
    labels = np.tile(np.r_[np.ones(30, bool), np.zeros(30, bool)], 10)
    scores = np.where(labels, rng.uniform(0.5, 1.0, n), rng.uniform(-1.0, 0.4, n))
    r = ten_fold_verification(scores, labels, folds)
    assert r.mean_accuracy == 1.0 and r.std_accuracy == 0.0
    assert r.auc == 1.0
    assert r.best_threshold_accuracy == 1.0
    assert scores[~labels].max() < r.best_threshold < scores[labels].min()
    assert r.tar_at_far == 1.0 and r.far_achieved == 0.0


def test_random_scores_are_chance():
    rng = np.random.default_rng(1)
    n = 6000
    labels = np.tile(np.r_[np.ones(300, bool), np.zeros(300, bool)], 10)
    folds = np.repeat(np.arange(10), 600)
    r = ten_fold_verification(rng.normal(size=n), labels, folds)
    assert abs(r.mean_accuracy - 0.5) < 0.05
    assert abs(r.auc - 0.5) < 0.05
    assert len(r.fold_accuracies) == 10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_and_threshold_match_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 400
    labels = rng.random(n) < 0.4
    scores = np.round(rng.normal(size=n) + 0.7 * labels, 1)  # rounding makes many ties
    assert len(np.unique(scores)) < n // 4
    assert roc_auc(scores, labels) == pytest.approx(brute_auc(scores, labels), abs=1e-12)
    _, acc = best_threshold(scores, labels)
    assert acc == pytest.approx(brute_best_accuracy(scores, labels), abs=1e-12)


def test_tar_at_far_brute_force():
    rng = np.random.default_rng(3)
    neg = rng.normal(size=3000)
    pos = rng.normal(size=3000) + 3.0
    s, y = np.r_[pos, neg], np.r_[np.ones(3000, bool), np.zeros(3000, bool)]
    tar, t, far = tar_at_far(s, y, 1e-3)
    assert far == pytest.approx(3 / 3000)  # continuous scores: exactly k = 3 impostors above
    assert t == pytest.approx(np.sort(neg)[-4])
    assert tar == pytest.approx((pos > t).mean())
    # no lower threshold keeps FAR <= 1e-3
    assert (neg > np.nextafter(t, -np.inf)).mean() > 1e-3


def test_accepts_torch_and_int_labels():
    s = torch.tensor([0.9, 0.1, 0.8, 0.2])
    y = torch.tensor([1, 0, 1, 0])
    r = ten_fold_verification(s, y, torch.tensor([0, 0, 1, 1]), far=None)
    assert r.mean_accuracy == 1.0


def test_result_to_dict_is_json():
    r = ten_fold_verification([0.9, 0.1, 0.8, 0.2], [True, False, True, False], [0, 0, 1, 1], n_missing=2)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["n_missing"] == 2 and d["std_ddof"] == 0 and d["auc"] == 1.0
    assert isinstance(d["fold_accuracies"], list)
    assert "population std" in r.summary()


@pytest.mark.parametrize(
    ("scores", "labels", "folds"),
    [
        ([0.1, float("nan")], [True, False], [0, 1]),  # NaN
        ([0.1, 0.2], [True, False], [0, 0]),  # one fold
        ([0.1, 0.2], [True, True], [0, 1]),  # one class
        ([0.1, 0.2], [True, False, True], [0, 1]),  # shapes
        ([0.1, 0.2], [True, False], [0.0, 1.0]),  # float fold ids
        ([0.1, 0.2], [2, 0], [0, 1]),  # labels not 0/1
    ],
)
def test_bad_inputs(scores, labels, folds):
    with pytest.raises(InputError):
        ten_fold_verification(np.asarray(scores), np.asarray(labels), np.asarray(folds))


# ----------------------------------------------------------------------------------------------------------------------
# pairs files
# ----------------------------------------------------------------------------------------------------------------------

GOOD = "2\t1\nAlice\t1\t2\nBob\t1\tCarol\t3\nDave\t2\t4\nAlice\t3\tEve\t1\n"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "pairs.txt"
    p.write_text(text)
    return p


def test_read_small_file(tmp_path):
    folds = read_lfw_pairs(_write(tmp_path, GOOD + "\n\n"))
    assert [len(f) for f in folds] == [2, 2]
    assert folds[0][0] == LFWPair("Alice", 1, "Alice", 2, True, 0, 2)
    assert folds[1][1] == LFWPair("Alice", 3, "Eve", 1, False, 1, 5)
    pairs, labels, fold_ids = flatten_folds(folds)
    assert labels.tolist() == [True, False, True, False] and fold_ids.tolist() == [0, 0, 1, 1]
    assert unique_images(folds) == unique_images(pairs)
    assert unique_images(pairs)[:3] == [("Alice", 1), ("Alice", 2), ("Alice", 3)]
    assert folds[0][1].paths("/x") == (Path("/x/images/Bob/Bob_0001.jpg"), Path("/x/images/Carol/Carol_0003.jpg"))


def test_single_number_header(tmp_path):
    folds = read_lfw_pairs(_write(tmp_path, "1\nAlice 1 2\nBob 1 Carol 3\n"))
    assert len(folds) == 1 and [p.same for p in folds[0]] == [True, False]


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("", 0, "empty"),
        ("ten 300\n", 1, "header"),
        ("2 1\nAlice 1 2\nBob 1 Carol 3\nDave 2 4\n", 4, "ends after 3"),
        (GOOD + "Extra 1 2\n", 6, "extra line"),
        ("2 1\nAlice 1 Bob 2\nBob 1 Carol 3\nDave 2 4\nAlice 3 Eve 1\n", 2, "expected a matched pair"),
        ("2 1\nAlice 1 2\nBob 1 Carol 3\nDave 2 4\nAlice 3 1\n", 5, "expected a mismatched pair"),
        ("2 1\nAlice 1 2\nBob 1 Carol x\nDave 2 4\nAlice 3 Eve 1\n", 3, "integer"),
        ("2 1\nAlice 0 2\nBob 1 Carol 3\nDave 2 4\nAlice 3 Eve 1\n", 2, ">= 1"),
        ("2 1\nAlice 1 2\nBob 1 Bob 3\nDave 2 4\nAlice 3 Eve 1\n", 3, "same person"),
        ("2 1\n\n../etc 1 2\nBob 1 Carol 3\nDave 2 4\nAlice 3 Eve 1\n", 3, "plain folder name"),
    ],
)
def test_malformed_pairs_file(tmp_path, text, line, needle):
    with pytest.raises(PairsFileError) as exc:
        read_lfw_pairs(_write(tmp_path, text))
    assert exc.value.line == line
    assert needle in str(exc.value)
    if line:
        assert f"line {line}" in str(exc.value)
    assert isinstance(exc.value, NullswapError) and isinstance(exc.value, ValueError)


def test_lfw_image_path():
    assert lfw_image_path("/lfw", "Abel_Pacheco", 4) == Path("/lfw/images/Abel_Pacheco/Abel_Pacheco_0004.jpg")
    for name, idx in [("a/b", 1), ("..", 1), ("", 1), ("A", 0), ("A", True)]:
        with pytest.raises(InputError):
            lfw_image_path("/lfw", name, idx)


@pytest.mark.shared
def test_real_pairs_txt(lfw_dir):
    folds = read_lfw_pairs(lfw_dir / "meta" / "pairs.txt")
    assert len(folds) == 10 and all(len(f) == 600 for f in folds)
    for k, fold in enumerate(folds):
        assert [p.same for p in fold] == [True] * 300 + [False] * 300
        assert {p.fold for p in fold} == {k}
    pairs, labels, _ = flatten_folds(folds)
    assert int(labels.sum()) == 3000 and len(pairs) == 6000
    assert pairs[0] == LFWPair("Abel_Pacheco", 1, "Abel_Pacheco", 4, True, 0, 2)
    images = unique_images(folds)
    assert len(images) == 7701
    missing = [lfw_image_path(lfw_dir, n, i) for n, i in images if not lfw_image_path(lfw_dir, n, i).is_file()]
    assert not missing, f"{len(missing)} referenced images are absent, e.g. {missing[:3]}"


# ----------------------------------------------------------------------------------------------------------------------
# pair scores
# ----------------------------------------------------------------------------------------------------------------------

PAIRS = [
    LFWPair("A", 1, "A", 2, True),
    LFWPair("A", 1, "B", 1, False),
    LFWPair("C", 1, "C", 2, True),  # C_2 missing
    LFWPair("B", 1, "D", 1, False),  # D_1 missing
]
EMB = {
    ("A", 1): np.array([1.0, 0.0]),
    ("A", 2): torch.tensor([[2.0, 2.0]]),  # (1, D) tensor, not normalised
    ("B", 1): [0.0, -3.0],
    ("C", 1): np.array([0.0, 1.0]),
    ("C", 2): None,  # no face detected
}


def test_pair_scores_cosine_and_min_policy(caplog):
    r = pair_scores(EMB, PAIRS)
    assert r.scores[:2] == pytest.approx([math.sqrt(0.5), 0.0])
    assert r.missing.tolist() == [False, False, True, True] and r.n_missing == 2
    assert r.scores[2:].tolist() == [-1.0, -1.0] and r.policy == "min"
    assert "2 of 4 pairs have a missing embedding" in caplog.text


def test_pair_scores_policies():
    worst = pair_scores(EMB, PAIRS, missing="worst")
    assert worst.scores[2:].tolist() == [-1.0, 1.0]
    nan = pair_scores(EMB, PAIRS, missing="nan")
    assert np.isnan(nan.scores[2:]).all() and np.isfinite(nan.scores[:2]).all()
    with pytest.raises(MissingEmbeddingError) as exc:
        pair_scores(EMB, PAIRS, missing="raise")
    assert exc.value.keys == [("C", 2), ("D", 1)]
    with pytest.raises(InputError):
        pair_scores(EMB, PAIRS, missing="drop")  # type: ignore[arg-type]


def test_pair_scores_matrix_and_path_keys():
    matrix = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    index = {Path("/r/images/A/A_0001.jpg"): 0, Path("/r/images/A/A_0002.jpg"): 1, Path("/r/images/B/B_0001.jpg"): 2}
    r = pair_scores(index, PAIRS[:2], key=lambda n, i: lfw_image_path("/r", n, i), matrix=matrix)
    assert r.scores == pytest.approx([math.sqrt(0.5), 0.0]) and r.n_missing == 0
    with pytest.raises(InputError):
        pair_scores({("A", 1): 0, ("A", 2): 5}, PAIRS[:1], matrix=matrix)


def test_pair_scores_bad_embeddings():
    with pytest.raises(InputError, match="different lengths"):
        pair_scores({("A", 1): [1.0, 0.0], ("A", 2): [1.0, 0.0, 0.0]}, PAIRS[:1])
    with pytest.raises(InputError, match="zeros"):
        pair_scores({("A", 1): [1.0, 0.0], ("A", 2): [0.0, 0.0]}, PAIRS[:1])


def test_end_to_end_synthetic_embeddings():
    rng = np.random.default_rng(4)
    ids = {n: rng.normal(size=16) for n in "ABCDEFGH"}
    emb = {(n, i): ids[n] + 0.3 * rng.normal(size=16) for n in ids for i in (1, 2, 3)}
    folds = [
        [LFWPair(n, 1, n, 2 + k % 2, True, k) for n in "ABCD"]
        + [LFWPair(a, 1, b, 3, False, k) for a, b in zip("EFGH", "ABCD", strict=True)]
        for k in range(4)
    ]
    pairs, labels, fold_ids = flatten_folds(folds)
    scored = pair_scores(emb, pairs)
    r = ten_fold_verification(scored.scores, labels, fold_ids, n_missing=scored.n_missing)
    assert r.mean_accuracy == 1.0 and r.auc == 1.0 and r.n_missing == 0


def test_auc_agrees_with_torchmetrics_to_its_float32():
    from torchmetrics.functional.classification import binary_auroc

    rng = np.random.default_rng(4)
    labels = rng.random(3000) < 0.5
    scores = np.clip(np.round(0.3 * rng.normal(size=3000) + 0.3 * labels + 0.3, 2), 0, 1)  # in [0, 1], with ties
    tm = float(binary_auroc(torch.from_numpy(scores), torch.from_numpy(labels).long()))
    assert roc_auc(scores, labels) == pytest.approx(tm, abs=1e-6)
