"""Block structure of a multilevel model: stacks of equal-sized blocks.

The marginal covariance of a nested random-effects model with block-diagonal sampling
covariance is block diagonal over the outermost clusters:
:math:`M_j = V_j + \\sum_l \\sigma^2_l S_{lj}`, where :math:`S_{lj}` is 1 where two effect
sizes of block j share the level-l group. Blocks of one size are stacked into
``(B, n, n)`` arrays so every operation is a batched small-matrix operation; nothing of size
k x k is ever formed and memory grows with the sum of squared block sizes.

A level matrix is stored by kind: ``"ones"`` (the whole block is one group), ``"eye"``
(every effect size its own group) or ``"dense"`` (a 0/1 stack).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evidence.stats._mv_fast import CompoundBlocks
from evidence.stats.covariance import BlockCovariance


@dataclass
class Level:
    """The group indicator of one random-effects level inside the blocks of one size."""

    kind: str  # "ones", "eye" or "dense"
    S: np.ndarray | None = None  # (B, n, n) float 0/1 for "dense"

    def add_to(self, M: np.ndarray, s2: float) -> None:
        """M += s2 * S (in place)."""
        if s2 == 0.0:
            return
        if self.kind == "ones":
            M += s2
        elif self.kind == "eye":
            n = M.shape[-1]
            M[:, np.arange(n), np.arange(n)] += s2
        else:
            M += s2 * self.S

    def left(self, A: np.ndarray) -> np.ndarray:
        """S @ A for A of shape (B, n) or (B, n, m)."""
        if self.kind == "eye":
            return A
        if self.kind == "ones":
            return np.broadcast_to(A.sum(axis=1, keepdims=True), A.shape)
        if A.ndim == 2:
            return np.einsum("bij,bj->bi", self.S, A)
        return self.S @ A

    def right(self, A: np.ndarray) -> np.ndarray:
        """A @ S for A of shape (B, n, n)."""
        if self.kind == "eye":
            return A
        if self.kind == "ones":
            return np.broadcast_to(A.sum(axis=2, keepdims=True), A.shape)
        return A @ self.S

    def trace_with(self, A: np.ndarray) -> float:
        """sum_b tr(A_b S_b) for symmetric S."""
        if self.kind == "eye":
            return float(np.einsum("bii->", A))
        if self.kind == "ones":
            return float(A.sum())
        return float(np.sum(A * self.S))


@dataclass
class SizeGroup:
    """All blocks with n rows: row indices, design, outcomes and sampling covariance."""

    n: int
    rows: np.ndarray  # (B, n) indices into the model rows
    block: np.ndarray  # (B,) block codes
    X: np.ndarray  # (B, n, p)
    y: np.ndarray  # (B, n)
    V: np.ndarray  # (B, n, n)
    levels: list[Level]
    V_diag: np.ndarray | None = None  # (B, n) when the sampling covariance is diagonal


def _level_kind(codes: np.ndarray, rows: np.ndarray, blocks_equal_level: bool) -> Level:
    if blocks_equal_level:
        return Level("ones")
    c = codes[rows]
    n = rows.shape[1]
    if n == 1:
        return Level("eye")
    S = (c[:, :, None] == c[:, None, :]).astype(float)
    if np.all(S.sum(axis=(1, 2)) == n):
        return Level("eye")
    if np.all(S == 1.0):
        return Level("ones")
    return Level("dense", S)


class Blocks:
    """The model rows partitioned into blocks, grouped by block size.

    Parameters
    ----------
    block_codes
        Block code (0..nb-1) of each row; every level-1 group must lie in one block.
    level_codes
        Per random-effects level, the group code of each row (outermost first).
    vi
        Sampling variances (used when ``V`` is None).
    V
        Block-diagonal sampling covariance, or None (diagonal ``vi``).
    X, y
        Design matrix (k x p) and outcomes.
    closed_form
        Use the closed forms of :mod:`evidence.stats._mv_fast` (attribute ``fast``) when V is
        diagonal and every level is the blocks or the rows.
    """

    def __init__(
        self,
        block_codes: np.ndarray,
        level_codes: list[np.ndarray],
        vi: np.ndarray,
        V: BlockCovariance | None,
        X: np.ndarray,
        y: np.ndarray,
        *,
        closed_form: bool = True,
    ) -> None:
        self.k = int(block_codes.size)
        self.p = int(X.shape[1])
        self.n_levels = len(level_codes)
        self.logdet_xtx = float(np.linalg.slogdet(X.T @ X)[1])
        nb = int(block_codes.max()) + 1 if self.k else 0
        self.nblocks = nb
        self._block_codes = block_codes
        self._level_codes = level_codes
        self.vi, self.V, self.X, self.y = vi, V, X, y
        self._order = np.argsort(block_codes, kind="stable")
        self.sizes = np.bincount(block_codes, minlength=nb)
        # a level equals the block partition when it has as many groups as there are blocks
        n_groups = [int(c.max()) + 1 for c in level_codes]  # codes are 0..n-1
        self._is_block = [
            ng == nb and _nested(codes, block_codes)
            for codes, ng in zip(level_codes, n_groups, strict=True)
        ]
        self._is_row = [ng == self.k for ng in n_groups]
        self.fast: CompoundBlocks | None = None
        simple = all(b or r for b, r in zip(self._is_block, self._is_row, strict=True))
        if closed_form and V is None and simple:
            self.fast = CompoundBlocks(self._order, self.sizes, np.array(self._is_block), vi, X, y)
        self._groups: list[SizeGroup] | None = None

    @property
    def groups(self) -> list[SizeGroup]:
        """The blocks stacked by size (built on first use)."""
        if self._groups is None:
            self._groups = self._build_groups()
        return self._groups

    def _build_groups(self) -> list[SizeGroup]:
        order, sizes, V, vi = self._order, self.sizes, self.V, self.vi
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        groups: list[SizeGroup] = []
        for n in np.unique(sizes):
            cl = np.flatnonzero(sizes == n)
            rows = order[starts[cl][:, None] + np.arange(n)]
            vdiag = None
            if V is None:
                vdiag = vi[rows]
                Vs = np.zeros((cl.size, n, n))
                Vs[:, np.arange(n), np.arange(n)] = vdiag
            else:
                Vs = V.gather(rows[:, :, None], rows[:, None, :])
            levels = [
                _level_kind(codes, rows, is_block)
                for codes, is_block in zip(self._level_codes, self._is_block, strict=True)
            ]
            groups.append(
                SizeGroup(int(n), rows, cl, self.X[rows], self.y[rows], Vs, levels, vdiag)
            )
        return groups


def _nested(codes: np.ndarray, block_codes: np.ndarray) -> bool:
    """True when each group of *codes* is exactly one block."""
    first = np.full(int(codes.max()) + 1, -1)
    first[codes] = block_codes
    return bool(np.all(first[codes] == block_codes))
