"""nuclear_face: what the dual certifies about every optimum of a nuclear-norm program."""

import numpy as np
import pytest

import cvxattn_lib as cal
from cvxattn_lib.certificates import nuclear_face


def svt(M, tau):
    U, s, Vt = np.linalg.svd(M, full_matrices=False)
    return (U * np.maximum(s - tau, 0.0)) @ Vt


def test_denoising_is_unique_with_the_exact_margins():
    # A = identity: Z* = svt(M, beta) in closed form, dual = Z* - M
    M = np.random.default_rng(0).standard_normal((6, 4))
    s = np.linalg.svd(M, compute_uv=False)
    beta = 1.5
    Z = svt(M, beta)
    face = nuclear_face(Z, Z - M, lambda W: W, beta)
    assert face.rank == int(np.sum(s > beta)) == 3
    assert face.alignment < 1e-12
    assert face.off_active == pytest.approx(s[3] / beta, rel=1e-12)  # the first singular value cut
    assert np.allclose(face.dual_over_beta, np.minimum(s, beta) / beta, rtol=0, atol=1e-12)
    assert face.injectivity == pytest.approx(1.0, rel=1e-12)  # U D W^T is an isometry
    assert face.unique()


def test_trace_measurement_has_a_face_of_optima():
    # min 1/2 (z00 + z11 - 3)^2 + ||Z||_*: every PSD diag(a, 2 - a), a in [0, 2], is optimal
    def apply(W):
        return np.array([W[0, 0] + W[1, 1]])

    dual = -np.eye(2)  # A*(grad L) = (z00 + z11 - 3) I = -I at every optimum
    for Z, rank in [(np.diag([1.0, 1.0]), 2), (np.diag([2.0, 0.0]), 1)]:
        value = 0.5 * (np.trace(Z) - 3) ** 2 + np.linalg.norm(Z, "nuc")
        # ||Z||_* >= |z00 + z11| =: |t|, and min_t (t - 3)^2 / 2 + |t| = 2.5 at t = 2
        assert value == pytest.approx(2.5, abs=1e-15)
        face = nuclear_face(Z, dual, apply, 1.0)
        assert face.rank == rank and face.alignment < 1e-15
        assert not face.unique()
    # rank 2: complementarity holds vacuously but the map on symmetric 2x2 is not injective
    assert nuclear_face(np.eye(2), dual, apply, 1.0).injectivity == 0.0
    # rank 1: the other direction of the dual sits at beta (no strict complementarity)
    assert nuclear_face(np.diag([2.0, 0.0]), dual, apply, 1.0).off_active == pytest.approx(1.0)


def test_zero_solution_is_unique_below_beta0():
    M = np.random.default_rng(1).standard_normal((3, 4))
    beta = 1.01 * np.linalg.norm(M, 2)
    face = nuclear_face(np.zeros_like(M), -M, lambda W: W, beta)
    assert face.rank == 0 and face.injectivity == 1.0
    assert face.off_active == pytest.approx(1 / 1.01, rel=1e-12) and face.unique()


def test_attention_fit_face_matches_its_certificate():
    X, Y, _ = cal.toydata.attention_teacher(n=6, seed=0)
    fit = cal.convex.fit_self_attention(X, Y, 0.1)
    face = fit.optimal_face()
    assert face.rank == fit.n_heads
    assert face.alignment < 1e-4  # the solver met U^T A*(V) W = -beta I to this accuracy
    assert np.max(face.dual_over_beta) <= 1 + 1e-5  # dual feasibility
    assert face.off_active == pytest.approx(face.dual_over_beta[face.rank], abs=1e-4)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="dual"):
        nuclear_face(np.eye(2), np.eye(3), lambda W: W, 1.0)
    with pytest.raises(TypeError, match="apply"):
        nuclear_face(np.eye(2), np.eye(2), None, 1.0)
    with pytest.raises(ValueError, match="beta"):
        nuclear_face(np.eye(2), np.eye(2), lambda W: W, -1.0)
    X, Y, _ = cal.toydata.attention_teacher(n=4, seed=0)
    fit = cal.convex.fit_self_attention(X, Y, 0.1, activation="gated_relu", n_gates=2)
    with pytest.raises(ValueError, match="activation"):
        fit.optimal_face()


def test_thresholds_are_the_ones_unique_applies():
    from cvxattn_lib.certificates import NuclearFace
    face = NuclearFace(rank=2, dual_over_beta=np.array([1.0, 1.0, 0.8]), alignment=0.01,
                       off_active=0.8, injectivity=1e-3)
    assert face.thresholds() == {"margin": pytest.approx(0.1), "injectivity": 1e-6}
    assert face.unique()                                  # margin 0.2 >= 0.1, 1e-3 > 1e-6
    assert not face.unique(tol=1e-2)                      # injectivity 1e-3 below 1e-2
    assert not face.unique(margin=0.25)                   # margin 0.2 below 0.25
    worse = NuclearFace(rank=2, dual_over_beta=face.dual_over_beta, alignment=0.03,
                        off_active=0.8, injectivity=1e-3)
    assert worse.thresholds()["margin"] == pytest.approx(0.3) and not worse.unique()
    with pytest.raises(ValueError, match="margin"):
        face.thresholds(margin=-1.0)


def test_rank_one_injectivity_is_one_trivially():
    # rank 1: Delta is a 1 x 1 scalar, so the map has one column and the ratio is 1 whenever
    # A(U W^T) != 0
    M = np.diag([3.0, 0.5, 0.2])
    Z = svt(M, 1.0)
    face = nuclear_face(Z, Z - M, lambda W: W, 1.0)
    assert face.rank == 1 and face.injectivity == 1.0
