"""Block-diagonal sampling covariance matrices, stored block by block.

A :class:`BlockCovariance` holds the sampling variance-covariance matrix of k effect sizes
that are correlated only within clusters (studies). It never forms the k x k matrix: each
cluster's block is kept in one flat array, so memory grows with the sum of the squared
cluster sizes, i.e. linearly in k when clusters have bounded size.

:func:`impute_covariance` builds the blocks from an assumed correlation, as clubSandwich's
``impute_covariance_matrix`` does; it is the sampling part of the correlated and hierarchical
effects (CHE) working model.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from evidence.errors import ModelError

__all__ = ["BlockCovariance", "impute_covariance", "factorize"]


def factorize(values: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes 0..m-1 (levels sorted) and the sorted unique labels of *values*.

    Raises
    ------
    ModelError
        Missing values in *values*.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ModelError(f"Argument '{what}' must be one-dimensional.")
    if arr.dtype.kind == "f":
        if np.isnan(arr).any():
            raise ModelError(f"Argument '{what}' has missing values; every effect needs one.")
    elif arr.dtype.kind == "O":
        if any(v is None or (isinstance(v, float) and v != v) for v in arr):
            raise ModelError(f"Argument '{what}' has missing values; every effect needs one.")
        if not all(isinstance(v, int | np.integer) for v in arr):
            arr = arr.astype(str)
        else:
            arr = arr.astype(np.int64)
    labels, codes = np.unique(arr, return_inverse=True)
    return codes.astype(np.int64).reshape(-1), labels


def _group_rows(codes: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by code (stable), the group sizes and each row's position in its group."""
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=m)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    pos = np.empty(codes.size, dtype=np.int64)
    pos[order] = np.arange(codes.size) - np.repeat(starts, sizes)
    return order, sizes, pos


@dataclass(frozen=True, eq=False)
class BlockCovariance:
    """A block-diagonal k x k covariance matrix stored block by block.

    Attributes
    ----------
    cluster
        Cluster code (0..m-1) of each of the k rows, in the order of the effect sizes.
    labels
        The cluster labels, ``labels[code]``.
    pos
        Position of each row inside its cluster's block (rows keep their data order).
    sizes, offsets
        Block sizes and the start of each block in ``values``.
    values
        All blocks, row-major, one after another (length ``sum(sizes**2)``).
    """

    cluster: np.ndarray
    labels: np.ndarray
    pos: np.ndarray
    sizes: np.ndarray
    offsets: np.ndarray
    values: np.ndarray

    @property
    def k(self) -> int:
        """Number of rows (effect sizes)."""
        return int(self.cluster.size)

    @classmethod
    def from_blocks(cls, cluster: Any, blocks: list[np.ndarray]) -> BlockCovariance:
        """Build from cluster labels and one square block per cluster (clusters sorted).

        ``blocks[c]`` is the covariance of the rows of the c-th cluster in sorted label order,
        its rows in data order (as clubSandwich's ``impute_covariance_matrix`` returns them).
        """
        codes, labels = factorize(cluster, "cluster")
        m = labels.size
        if len(blocks) != m:
            raise ModelError(
                f"Argument 'blocks' has {len(blocks)} blocks but there are {m} clusters."
            )
        _, sizes, pos = _group_rows(codes, m)
        flat = []
        for c, b in enumerate(blocks):
            b = np.asarray(b, dtype=float)
            if b.shape != (sizes[c], sizes[c]):
                raise ModelError(
                    f"Block {c + 1} (cluster {labels[c]}) has shape {b.shape} but the cluster has "
                    f"{sizes[c]} effect sizes."
                )
            if not np.allclose(b, b.T, rtol=1e-12, atol=0):
                raise ModelError(f"Block {c + 1} (cluster {labels[c]}) is not symmetric.")
            flat.append(b.reshape(-1))
        return cls._make(codes, labels, pos, sizes, np.concatenate(flat) if flat else np.zeros(0))

    @classmethod
    def _make(cls, codes, labels, pos, sizes, values) -> BlockCovariance:
        offsets = np.concatenate(([0], np.cumsum(sizes.astype(np.int64) ** 2)[:-1]))
        arrays = [codes, labels, pos, sizes, offsets, values]
        for a in arrays:
            a.setflags(write=False)
        return cls(*arrays)

    def gather(self, rows_i: np.ndarray, rows_j: np.ndarray) -> np.ndarray:
        """Entries V[i, j] for broadcastable arrays of row indices (0 across clusters)."""
        ci, cj = self.cluster[rows_i], self.cluster[rows_j]
        same = ci == cj
        flat = self.offsets[ci] + self.pos[rows_i] * self.sizes[ci] + self.pos[rows_j]
        flat = np.where(same, flat, 0)
        return np.where(same, self.values[flat], 0.0)

    def diagonal(self) -> np.ndarray:
        """The sampling variances (the diagonal), in data order."""
        idx = np.arange(self.k)
        return self.gather(idx, idx)

    def block(self, c: int) -> np.ndarray:
        """The block of cluster code *c* as a square array."""
        n = int(self.sizes[c])
        start = int(self.offsets[c])
        return self.values[start : start + n * n].reshape(n, n).copy()

    def subset(self, keep: np.ndarray) -> BlockCovariance:
        """The covariance of the rows where the boolean mask *keep* is true."""
        keep = np.asarray(keep, dtype=bool)
        rows = np.flatnonzero(keep)
        codes_old = self.cluster[rows]
        used, codes = np.unique(codes_old, return_inverse=True)
        m = used.size
        _, sizes, pos = _group_rows(codes, m)
        out = np.empty(int(np.sum(sizes.astype(np.int64) ** 2)))
        offsets = np.concatenate(([0], np.cumsum(sizes.astype(np.int64) ** 2)[:-1]))
        order = np.argsort(codes, kind="stable")
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        for n in np.unique(sizes):
            cl = np.flatnonzero(sizes == n)
            idx = rows[order[starts[cl][:, None] + np.arange(n)]]
            blocks = self.gather(idx[:, :, None], idx[:, None, :])
            out[offsets[cl][:, None] + np.arange(n * n)] = blocks.reshape(cl.size, n * n)
        return BlockCovariance._make(codes.astype(np.int64), self.labels[used], pos, sizes, out)

    def to_dense(self) -> np.ndarray:
        """The full k x k matrix. For checks on small data only: memory grows with k**2."""
        idx = np.arange(self.k)
        return self.gather(idx[:, None], idx[None, :])


def impute_covariance(
    vi: Any, cluster: Any, r: float | Any = 0.6, *, smooth_vi: bool = False
) -> BlockCovariance:
    """Sampling covariance blocks from an assumed within-cluster correlation.

    Parameters
    ----------
    vi
        Sampling variances, one per effect size.
    cluster
        Cluster (study) label of each effect size.
    r
        Assumed correlation between effect sizes of one cluster (default 0.6); a sequence
        gives one value per cluster (in sorted label order), recycled as R's ``rep_len``.
    smooth_vi
        Replace each cluster's variances by their mean (clubSandwich's ``smooth_vi``).

    Returns
    -------
    BlockCovariance

    Notes
    -----
    Block of cluster j: :math:`V_j = [r\\,\\mathbf{1}\\mathbf{1}' + (1-r) I] \\circ
    (\\sqrt{v_j}\\sqrt{v_j}')`, as ``clubSandwich::impute_covariance_matrix(vi, cluster, r,
    smooth_vi)``; with ``smooth_vi`` the :math:`v_{ij}` of a cluster are replaced by their
    mean. A block that is not positive definite gives a warning, as in clubSandwich.

    References
    ----------
    Pustejovsky, J. E., & Tipton, E. (2022). Meta-analysis with robust variance estimation:
    Expanding the range of working models. Prevention Science, 23, 425-438.
    """
    v = np.asarray(vi, dtype=float).reshape(-1)
    codes, labels = factorize(cluster, "cluster")
    if codes.size != v.size:
        raise ModelError(
            f"Argument 'cluster' has {codes.size} values but 'vi' has {v.size}; they must match."
        )
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        bad = int(np.flatnonzero(~np.isfinite(v) | (v < 0))[0])
        raise ModelError(
            f"Argument 'vi' must be finite and non-negative; row {bad + 1} is {v[bad]}."
        )
    m = labels.size
    r_arr = np.resize(np.asarray(r, dtype=float).reshape(-1), m)
    if np.any(np.abs(r_arr) > 1) or not np.all(np.isfinite(r_arr)):
        raise ModelError("Argument 'r' must be a correlation between -1 and 1.")
    order, sizes, pos = _group_rows(codes, m)
    if smooth_vi:
        v = (np.bincount(codes, weights=v, minlength=m) / sizes)[codes]
    sq = np.sqrt(v)
    offsets = np.concatenate(([0], np.cumsum(sizes.astype(np.int64) ** 2)[:-1]))
    values = np.empty(int(np.sum(sizes.astype(np.int64) ** 2)))
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    not_pd = []
    for n in np.unique(sizes):
        cl = np.flatnonzero(sizes == n)
        idx = order[starts[cl][:, None] + np.arange(n)]
        s = sq[idx]
        rr = r_arr[cl][:, None, None]
        corr = rr + (1.0 - rr) * np.eye(n)[None, :, :]
        blocks = corr * s[:, :, None] * s[:, None, :]
        values[offsets[cl][:, None] + np.arange(n * n)] = blocks.reshape(cl.size, n * n)
        if n > 1:
            bad = (r_arr[cl] < -1.0 / (n - 1)) | (r_arr[cl] >= 1.0) | np.any(s <= 0, axis=1)
            not_pd.extend(labels[cl[bad]].tolist())
    if not_pd:
        shown = ", ".join(str(x) for x in not_pd[:5])
        warnings.warn(
            f"The imputed covariance blocks of {len(not_pd)} clusters are not positive definite "
            f"(first: {shown}).",
            stacklevel=2,
        )
    return BlockCovariance._make(codes, labels, pos, sizes, values)
