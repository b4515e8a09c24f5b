"""Exact Shapley values of a tree ensemble against one reference row, for a whole batch. Pure.

The game is the one :mod:`consumer.explaining` uses for every family: a coalition S of
features takes the applicant's values, the rest the reference's; its worth is the
ensemble's output (log-odds for gradient boosting, the probability for forests). This is
interventional TreeSHAP with a single background row (Lundberg et al., "From local
explanations to global understanding with explainable AI for trees", 2020), which needs no
sampling and no coalition enumeration:

    for each tree, follow every path a hybrid of x and the reference can take:
        at a split on feature f where x and the reference go the same way, follow it;
        where they part, f must come from x (go x's way) or from the reference (go its
        way): both, unless an earlier split on this path already fixed f's side
    a leaf of value v reached with A features from x and B from the reference is worth v
    exactly to the coalitions holding all of A and none of B, so its Shapley share is
        i in A: +v (|A|-1)! |B|! / (|A|+|B|)!      j in B: -v |A|! (|B|-1)! / (|A|+|B|)!

The paths of all trees and all rows advance together as numpy arrays, one level of depth
per iteration (as many as the deepest tree has), with A and B as bit masks. The
values sum to output(x) - output(reference) exactly; the unit tests compare them with an
enumeration of every coalition. Shap's TreeExplainer computes the same, but importing
``shap`` adds numba: 155 MB to every worker and 3 s to its start (measured on this
machine), against a 400 MB budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Final

import numpy as np
import pandas as pd

_LEAF: Final = -1
_CATEGORIES: Final = 256  # HistGradientBoosting's categories are 0..255 (bitsets of 8 x 32)


@dataclass(frozen=True)
class TreeEnsemble:
    """Every tree of a model as flat node arrays; ``feature`` is -1 at leaves.

    ``value`` is the leaf's share of the output (already divided among a forest's trees).
    ``goes_left`` per categorical node is its row in ``category_left`` (-1 elsewhere):
    which of the 256 categories go left.
    """

    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    missing_left: np.ndarray
    category_row: np.ndarray
    category_left: np.ndarray
    log_odds: bool
    """True when the output is log-odds (boosting), False for a probability (forests)."""
    encoder: Any = None
    """The model's own column-wise input encoding (gradient boosting with categorical
    features ordinal-encodes them and puts them first), applied before the trees."""
    inputs: np.ndarray | None = None
    """For each encoded column, the input feature it comes from (None: the same order)."""

    def shapley_values(self, frame: pd.DataFrame, reference: pd.DataFrame) -> np.ndarray:
        """:func:`shapley_values` of ``frame``'s rows against ``reference`` (one row), in
        ``frame``'s columns. The encoding is column-wise, so each encoded column's values
        are its input feature's."""
        x, ref = (
            np.asarray(self.encoder.transform(f) if self.encoder else f, dtype=np.float64)
            for f in (frame, reference)
        )
        values = shapley_values(self, x, ref[0])
        if self.inputs is None:
            return values
        out = np.empty_like(values)
        out[:, self.inputs] = values
        return out

    def goes_left(self, values: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """Whether ``values`` (one per node of ``nodes``) take the left branch."""
        missing = np.isnan(values)
        left = values <= self.threshold[nodes]
        rows = self.category_row[nodes]
        categorical = rows >= 0
        if categorical.any():
            code = values[categorical]
            known = (code >= 0) & (code < _CATEGORIES)
            index = np.where(known, code, 0).astype(np.intp)
            chosen = self.category_left[rows[categorical], index]
            left[categorical] = np.where(known, chosen, self.missing_left[nodes[categorical]])
        return np.where(missing, self.missing_left[nodes], left)


def ensemble_of(model: Any) -> TreeEnsemble | None:
    """The trees of a fitted binary scikit-learn tree model, or None for any other model."""
    if hasattr(model, "_predictors") and getattr(model, "n_trees_per_iteration_", 0) == 1:
        return _hist_gradient_boosting(model)
    trees = getattr(model, "estimators_", None) if hasattr(model, "n_estimators") else [model]
    if not trees or not all(hasattr(t, "tree_") for t in trees) or len(model.classes_) != 2:
        return None
    if any(t.tree_.n_outputs != 1 for t in trees):
        return None
    parts = []
    for tree in trees:
        t = tree.tree_
        # Classifier trees store class fractions per node (scikit-learn >= 1.4).
        parts.append(
            _Part(
                np.where(t.children_left < 0, _LEAF, t.feature).astype(np.intp),
                t.threshold.astype(np.float64),
                t.children_left.astype(np.intp),
                t.children_right.astype(np.intp),
                t.value[:, 0, 1] / len(trees),
                np.asarray(getattr(t, "missing_go_to_left", np.zeros(t.node_count)), dtype=bool),
                np.full(t.node_count, -1),
            )
        )
    return _join(parts, np.zeros((0, _CATEGORIES), dtype=bool), log_odds=False)


@dataclass(frozen=True)
class _Part:
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    missing_left: np.ndarray
    category_row: np.ndarray


def _hist_gradient_boosting(model: Any) -> TreeEnsemble:
    known, feature_map = model._bin_mapper.make_known_categories_bitsets()
    parts: list[_Part] = []
    tables: list[np.ndarray] = []
    for (predictor,) in model._predictors:
        nodes = predictor.nodes
        leaf = nodes["is_leaf"].astype(bool)
        category_row = np.full(len(nodes), -1)
        for node in np.flatnonzero(nodes["is_categorical"].astype(bool) & ~leaf):
            known_bits = _bits(known[feature_map[nodes["feature_idx"][node]]])
            left_bits = _bits(predictor.raw_left_cat_bitsets[nodes["bitset_idx"][node]])
            # Unknown categories go where missing values go (as in scikit-learn's predictor).
            missing = bool(nodes["missing_go_to_left"][node])
            category_row[node] = len(tables)
            tables.append(np.where(known_bits, left_bits, missing))
        parts.append(
            _Part(
                np.where(leaf, _LEAF, nodes["feature_idx"]).astype(np.intp),
                nodes["num_threshold"].astype(np.float64),
                np.where(leaf, _LEAF, nodes["left"]).astype(np.intp),
                np.where(leaf, _LEAF, nodes["right"]).astype(np.intp),
                nodes["value"].astype(np.float64),
                nodes["missing_go_to_left"].astype(bool),
                category_row,
            )
        )
    table = np.array(tables, dtype=bool).reshape(-1, _CATEGORIES)
    ensemble = _join(parts, table, log_odds=True)
    if (encoder := model._preprocessor) is None:
        return ensemble
    categorical = np.asarray(model.is_categorical_, dtype=bool)
    inputs = np.concatenate([np.flatnonzero(categorical), np.flatnonzero(~categorical)])
    return replace(ensemble, encoder=encoder, inputs=inputs)


def _bits(bitset: np.ndarray) -> np.ndarray:
    """A scikit-learn bitset (8 x uint32) as 256 booleans."""
    words = np.asarray(bitset, dtype=np.uint32)
    return ((words[:, None] >> np.arange(32, dtype=np.uint32)) & 1).astype(bool).ravel()


def _join(parts: list[_Part], category_left: np.ndarray, *, log_odds: bool) -> TreeEnsemble:
    """One node array for all trees: each tree's child indices shifted by its offset."""
    offsets = np.cumsum([0] + [len(p.feature) for p in parts[:-1]])

    def shifted(children: np.ndarray, offset: int) -> np.ndarray:
        return np.where(children >= 0, children + offset, _LEAF)

    return TreeEnsemble(
        roots=offsets.astype(np.intp),
        feature=np.concatenate([p.feature for p in parts]),
        threshold=np.concatenate([p.threshold for p in parts]),
        left=np.concatenate([shifted(p.left, o) for p, o in zip(parts, offsets, strict=True)]),
        right=np.concatenate([shifted(p.right, o) for p, o in zip(parts, offsets, strict=True)]),
        value=np.concatenate([p.value for p in parts]),
        missing_left=np.concatenate([p.missing_left for p in parts]),
        category_row=np.concatenate([p.category_row for p in parts]),
        category_left=category_left,
        log_odds=log_odds,
    )


def _shapley_weights(k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(w_a[a, b], w_b[a, b])``: a leaf's share for one feature of A, and of B."""
    w_a, w_b = np.zeros((k + 1, k + 1)), np.zeros((k + 1, k + 1))
    for a in range(k + 1):
        for b in range(k + 1 - a):
            if a:
                w_a[a, b] = math.factorial(a - 1) * math.factorial(b) / math.factorial(a + b)
            if b:
                w_b[a, b] = math.factorial(a) * math.factorial(b - 1) / math.factorial(a + b)
    return w_a, w_b


def shapley_values(ensemble: TreeEnsemble, x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``(rows, features)`` Shapley values of the ensemble's output for ``x`` against
    ``reference`` (one row); each row sums to output(x) - output(reference)."""
    n, k = x.shape
    weights = _shapley_weights(k)
    out = np.zeros(n * k)
    splits = np.flatnonzero(ensemble.feature != _LEAF)
    # Per node: the reference's way, and the feature's bit in the A and B masks.
    r_next = np.full(len(ensemble.feature), _LEAF)
    r_left = ensemble.goes_left(reference[ensemble.feature[splits]], splits)
    r_next[splits] = np.where(r_left, ensemble.left[splits], ensemble.right[splits])
    node_bit = np.left_shift(np.int64(1), np.maximum(ensemble.feature, 0))
    rows = np.repeat(np.arange(n), len(ensemble.roots))
    nodes = np.tile(ensemble.roots, n)
    in_a = np.zeros(len(nodes), dtype=np.int64)
    in_b = np.zeros(len(nodes), dtype=np.int64)
    while len(nodes):
        feature = ensemble.feature[nodes]
        if (at_leaf := feature == _LEAF).any():
            reached = at_leaf & ((in_a | in_b) != 0)  # the reference's own leaf is worth 0
            _add_leaves(out, k, weights, rows[reached], ensemble.value[nodes[reached]],
                        in_a[reached], in_b[reached])  # fmt: skip
            keep = ~at_leaf
            rows, nodes, in_a, in_b, feature = (
                rows[keep],
                nodes[keep],
                in_a[keep],
                in_b[keep],
                feature[keep],
            )
        x_left = ensemble.goes_left(x[rows, feature], nodes)
        x_next = np.where(x_left, ensemble.left[nodes], ensemble.right[nodes])
        r_way = r_next[nodes]
        bit = node_bit[nodes]
        part = x_next != r_way
        fixed_b = (in_b & bit) != 0
        split = part & ~fixed_b & ((in_a & bit) == 0)
        # Every path goes on x's way, or the reference's where B already holds the feature;
        # where the two part over a feature not yet fixed, a second path takes the
        # reference's way with the feature in B, and the first adds it to A.
        extra = np.flatnonzero(split)
        rows = np.concatenate([rows, rows[extra]])
        nodes = np.concatenate([np.where(part & fixed_b, r_way, x_next), r_way[extra]])
        in_b = np.concatenate([in_b, in_b[extra] | bit[extra]])
        in_a = np.concatenate([in_a | np.where(split, bit, 0), in_a[extra]])
    return out.reshape(n, k)


def _add_leaves(
    out: np.ndarray,
    k: int,
    weights: tuple[np.ndarray, np.ndarray],
    rows: np.ndarray,
    value: np.ndarray,
    in_a: np.ndarray,
    in_b: np.ndarray,
) -> None:
    """Add each reached leaf's Shapley shares to ``out`` (rows x features, flattened)."""
    (leaf_a, column_a), (leaf_b, column_b) = _set_bits(in_a), _set_bits(in_b)
    a = np.bincount(leaf_a, minlength=len(rows))
    b = np.bincount(leaf_b, minlength=len(rows))
    shares = (
        (leaf_a, column_a, value * weights[0][a, b]),
        (leaf_b, column_b, -value * weights[1][a, b]),
    )
    for leaf, column, share in shares:
        out += np.bincount(rows[leaf] * k + column, weights=share[leaf], minlength=out.size)


def _set_bits(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every set bit of ``masks`` as (index of its mask, bit number): one pass per bit set
    in the fullest mask (at most a path's depth), not one per feature."""
    index = np.flatnonzero(masks)
    masks, found = masks[index], []
    while len(masks):
        low = masks & -masks
        found.append((index, np.frexp(low.astype(np.float64))[1] - 1))  # log2 of 2^j
        masks = masks ^ low
        keep = masks != 0
        masks, index = masks[keep], index[keep]
    if not found:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    return np.concatenate([i for i, _ in found]), np.concatenate([c for _, c in found])
