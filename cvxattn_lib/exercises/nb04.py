"""Exercises of notebook 04; worked solutions in ``notebooks/solutions/04_*.md``."""

from __future__ import annotations

import numpy as np

from ._base import Exercise, number


def _mixer_lifted_entries() -> int:
    # Z = sum_j vec(A_j) vec(B_j)^T for s = 8 tokens, d = 3 channels, c = 2 outputs
    from ..convex.mixer import lift_mixer

    return int(lift_mixer(np.zeros((1, 8, 8)), np.zeros((1, 3, 2))).size)


def _circulant_penalty() -> float:
    # one kernel k = (3, 4, 0, 0) with channel map B = [[1]]: ||Z||_* = ||k vec(B)^T||_*
    from ..convex.fno import lift_fno

    return float(np.linalg.norm(lift_fno(np.array([[3.0, 4.0, 0.0, 0.0]]), np.ones((1, 1, 1))), "nuc"))


def _block_norm_of_identity() -> float:
    # the identity token map circ(delta_0) on s = 6 tokens, d = c = 1, priced by sum_w ||R_w||_*
    from ..convex.fno import circulant_to_spectral, lift_fno

    delta = np.eye(6)[:1]
    R = circulant_to_spectral(lift_fno(delta, np.ones((1, 1, 1))), d=1)
    return float(sum(np.linalg.norm(Rw, "nuc") for Rw in R))


def _paired_modes() -> int:
    from ..convex.fno import parseval_multiplicity

    return int(np.sum(parseval_multiplicity(8) == 2))


EXERCISES: dict[str, Exercise] = {
    "04.mixer_entries": number(_mixer_lifted_entries, "the lifted Mixer matrix has one row per "
                                 "token pair (t, u) and one column per channel pair (a, b)"),
    "04.circulant_penalty": number(_circulant_penalty, "Z = k vec(B)^T has rank one; its only "
                                     "singular value is ||k||_2 ||B||_F"),
    "04.block_norm_identity": number(_block_norm_of_identity, "the DFT of a delta is 1 at every "
                                       "mode; count the rfft modes of s = 6 tokens"),
    "04.paired_modes": number(_paired_modes, "the rfft of s = 8 tokens has s//2 + 1 modes; modes 0 "
                                "and s/2 are their own conjugates"),
}
