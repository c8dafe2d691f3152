"""The block dual norms of the ReLU program (``cal.convex.relu_cones``): the vectorised face
enumeration (d = 3) equals one NNLS per block (``cal.certificates.cone_support``), on general and
on degenerate data (a repeated point, three points on a line), its maximum is
``cal.arrangements.relu_dual_norm``, and the facet rows describe the same cones."""

import numpy as np
import pytest

from cvxattn_lib import arrangements
from cvxattn_lib.certificates import cone_support
from cvxattn_lib.convex.relu_cones import ReluCones, cones_for

AGREE = 1e-9  # relative to the largest block norm: NNLS's own accuracy is ~1e-12 here


def nnls_norms(X, D, r):
    """The definition, block by block: ||Pi_K(-g_j)|| and ||Pi_K(g_j)||, g_j = X^T D_j r."""
    out = np.zeros((2, D.shape[1]))
    for j in range(D.shape[1]):
        g, A = X.T @ (D[:, j] * r), (2.0 * D[:, j] - 1.0)[:, None] * X
        out[:, j] = cone_support(A, -g), cone_support(A, g)
    return out


def toy(n, seed, degenerate=None):
    rng = np.random.default_rng(seed)
    X = np.c_[rng.standard_normal((n, 2)), np.ones(n)]
    if degenerate == "repeated":
        X[2] = X[0]
    elif degenerate == "collinear":
        X[2, :2] = 0.3 * X[0, :2] + 0.7 * X[1, :2]  # three points on one line of the data plane
    return X


@pytest.mark.parametrize("n, degenerate", [(3, None), (5, None), (12, None), (25, None),
                                           (6, "repeated"), (7, "collinear"), (12, "collinear")])
def test_faces_equal_nnls(n, degenerate):
    rng = np.random.default_rng(n)
    X = toy(n, seed=n, degenerate=degenerate)
    D, _ = arrangements.enumerate_patterns(X)
    cones = ReluCones(X, D)
    assert cones.method == "faces"
    for _ in range(4):
        r = rng.standard_normal(n)
        got, want = cones.block_norms(r), nnls_norms(X, D, r)
        assert np.abs(got - want).max() <= AGREE * max(1.0, want.max())
        assert cones.dual_norm(r) == pytest.approx(arrangements.relu_dual_norm(X, r, D),
                                                   rel=AGREE, abs=AGREE)
    assert cones.dual_norm(np.zeros(n)) == 0.0


def test_facet_rows_describe_the_same_cones():
    X = toy(15, seed=1, degenerate="collinear")
    D, _ = arrangements.enumerate_patterns(X)
    cones = ReluCones(X, D)
    F = cones.facets()
    assert F.shape == D.shape and np.all(F.sum(axis=0) >= 3)  # a pointed cone in R^3
    assert F.sum() < D.size / 2  # far fewer rows than n per cone
    U = np.random.default_rng(0).standard_normal((3, 5000))
    for j in range(D.shape[1]):
        AU = (2.0 * D[:, j, None] - 1.0) * (X @ U)
        np.testing.assert_array_equal(np.all(AU >= 0, axis=0), np.all(AU[F[:, j]] >= 0, axis=0))


def test_other_dimensions_fall_back_to_nnls():
    rng = np.random.default_rng(3)
    for X in (rng.standard_normal((6, 2)),  # d = 2
              np.c_[rng.standard_normal((6, 2)), np.zeros(6)]):  # d = 3, rank 2
        D, _ = arrangements.enumerate_patterns(X)
        cones = ReluCones(X, D)
        assert cones.method == "nnls" and cones.facets().all()
        r = rng.standard_normal(6)
        np.testing.assert_allclose(cones.block_norms(r), nnls_norms(X, D, r), rtol=1e-12, atol=1e-14)


def test_shared_instance_and_bad_input():
    X = toy(6, seed=2)
    D, _ = arrangements.enumerate_patterns(X)
    assert cones_for(X, D) is cones_for(X.copy(), D.copy())
    assert cones_for(X, D) is not cones_for(X, D[:, :-1])
    with pytest.raises(ValueError, match="D must have shape"):
        ReluCones(X, D[:-1])
    with pytest.raises(ValueError, match="r"):
        ReluCones(X, D).block_norms(np.ones(5))


def test_projections_are_the_maximisers():
    """projections(r) are the NNLS projections g + A^T mu, their norms the block norms."""
    from scipy.optimize import nnls

    rng = np.random.default_rng(7)
    X = toy(10, seed=7, degenerate="collinear")
    D, _ = arrangements.enumerate_patterns(X)
    cones = ReluCones(X, D)
    r = rng.standard_normal(10)
    proj = cones.projections(r)
    np.testing.assert_allclose(np.linalg.norm(proj, axis=2), cones.block_norms(r), atol=1e-10)
    for j in range(D.shape[1]):
        A, g = (2.0 * D[:, j] - 1.0)[:, None] * X, X.T @ (D[:, j] * r)
        for row, h in ((0, -g), (1, g)):
            mu, _ = nnls(A.T, -h)
            np.testing.assert_allclose(proj[row, j], h + A.T @ mu, atol=1e-9)
            assert np.all(A @ proj[row, j] >= -1e-9)  # in the cone
