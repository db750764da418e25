"""Source selection: majority hull, falsetickers, no-majority, chrony-style liar counts, properties."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from timekit.analysis.selection import (
    STATUS_NO_MAJORITY,
    STATUS_NO_SOURCES,
    STATUS_OK,
    STATUS_SINGLE_SOURCE,
    SourceInterval,
    majority_size,
    select_sources,
)


def iv(name: str, lo: float, hi: float) -> SourceInterval:
    """A source given by its interval ends (dyadic values keep the arithmetic exact)."""
    return SourceInterval(name, (lo + hi) / 2, (hi - lo) / 2)


def honest_and_liars(
    seed: int, n_honest: int, liar_offsets_s: list[float], truth_s: float = 0.0
) -> list[SourceInterval]:
    """n_honest intervals containing truth (root distance 5-20 ms) plus narrow liars at liar_offsets_s."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_honest):
        half_width_s = float(rng.uniform(0.005, 0.020))
        err_s = float(rng.uniform(-0.9, 0.9)) * half_width_s  # |err| < half width: contains the truth
        out.append(SourceInterval(f"h{i}", truth_s + err_s, half_width_s))
    out += [SourceInterval(f"liar{j}", off, 0.005) for j, off in enumerate(liar_offsets_s)]
    return out


def test_majority_size_and_tolerated_liars() -> None:
    # q = floor(m/2) + 1; f_max = m - q: m=5 -> 2 liars, m=4 -> 1, m=3 -> 1, m=2 -> 0
    assert [majority_size(m) for m in (1, 2, 3, 4, 5, 6)] == [1, 2, 2, 3, 3, 4]


@pytest.mark.parametrize("liars", [[2.5], [2.5, -3.0], [0.5, 0.6]])
def test_five_sources_one_or_two_liars_caught(liars: list[float]) -> None:  # FAULTS Q3, chrony 009
    for seed in range(20):
        srcs = honest_and_liars(seed, 5 - len(liars), liars)
        sel = select_sources(srcs)
        assert sel.status == STATUS_OK and sel.quorum
        assert sel.lo_s <= 0.0 <= sel.hi_s  # the truth
        assert set(sel.falsetickers) == {f"liar{j}" for j in range(len(liars))}
        honest = [s for s in srcs if s.name.startswith("h")]
        # the answer comes from the honest majority only: inside their hull, at most 2 x 20 ms wide
        assert min(s.lo_s for s in honest) <= sel.lo_s and sel.hi_s <= max(s.hi_s for s in honest)


@pytest.mark.parametrize("n_liars", [3, 4])
def test_five_sources_three_or_four_scattered_give_no_majority(n_liars: int) -> None:  # FAULTS Q4
    liars = [1.0, 2.0, 3.0, 4.0][:n_liars]
    sel = select_sources(honest_and_liars(7, 5 - n_liars, liars))
    assert sel.status == STATUS_NO_MAJORITY and not sel.quorum
    assert (sel.lo_s, sel.hi_s, sel.f) == (None, None, None)
    assert sel.n_agree == 5 - n_liars  # the honest ones agree with each other, the liars with nobody
    assert sel.reason == f"no majority: only {5 - n_liars} of 5 agree (a majority needs 3)"
    assert sel.falsetickers == () and sel.truechimers == ()  # nobody is named a liar without a majority


def test_three_colluding_liars_win_the_assumption_is_a_majority() -> None:
    # documents the limit: a colluding majority is indistinguishable from the truth
    sel = select_sources(honest_and_liars(3, 2, [2.5, 2.5, 2.5]))
    assert sel.quorum and sel.lo_s > 2.0 and set(sel.falsetickers) == {"h0", "h1"}


def test_four_sources_one_falseticker_at_plus_2_5s_exact() -> None:
    srcs = [iv("a", -0.5, 0.5), iv("b", -0.25, 0.75), iv("c", -0.375, 0.125), iv("d", 2.25, 2.75)]
    sel = select_sources(srcs)
    # m = 4, q = 3: coverage >= 3 only where a, b, c all overlap:
    # [max(-0.5, -0.25, -0.375), min(0.5, 0.75, 0.125)] = [-0.25, 0.125]
    assert (sel.lo_s, sel.hi_s) == (-0.25, 0.125)
    assert (sel.marzullo_lo_s, sel.marzullo_hi_s, sel.f) == (-0.25, 0.125, 1)  # max coverage 3 = 4 - 1
    assert sel.truechimers == ("a", "b", "c") and sel.falsetickers == ("d",)
    assert (sel.n_sources, sel.n_agree) == (4, 3)
    assert sel.reason == "majority: 3 of 4 agree at a common point (a majority needs 3); 1 falseticker(s): d"


def test_marzullo_smallest_f_is_not_safe_but_the_majority_hull_is() -> None:
    # honest A = [0, 10], B = [5, 20], truth 6; a liar C = [8, 9] inside both
    sel = select_sources([iv("A", 0.0, 10.0), iv("B", 5.0, 20.0), iv("C", 8.0, 9.0)])
    assert (sel.marzullo_lo_s, sel.marzullo_hi_s, sel.f) == (8.0, 9.0, 0)  # coverage 3 on [8, 9]: misses 6
    assert (sel.lo_s, sel.hi_s) == (5.0, 10.0)  # q = 2: hull of coverage >= 2 = [5, 10], holds 6
    assert sel.falsetickers == ()  # C overlaps [5, 10]: indistinguishable from an honest source


def test_docstring_picture() -> None:
    srcs = [iv("A", -0.20, 0.06), iv("B", -0.10, 0.16), iv("C", -0.14, 0.04), iv("D", 0.00, 0.04),
            iv("E", 2.47, 2.53)]
    sel = select_sources(srcs)
    assert sel.lo_s == pytest.approx(-0.10, abs=1e-15) and sel.hi_s == pytest.approx(0.04, abs=1e-15)
    assert sel.marzullo_lo_s == pytest.approx(0.0, abs=1e-15) and sel.f == 1  # A, B, C, D on [0, 0.04]
    assert sel.falsetickers == ("E",)


def test_single_source_is_flagged_unverifiable() -> None:  # FAULTS Q2
    sel = select_sources([SourceInterval("only:123", 0.25, 0.125)])
    assert sel.status == STATUS_SINGLE_SOURCE
    assert (sel.lo_s, sel.hi_s) == (0.125, 0.375)  # 0.25 -/+ 0.125
    assert "unverifiable" in sel.reason and sel.truechimers == ("only:123",)


def test_no_sources() -> None:  # FAULTS Q1
    sel = select_sources([])
    assert sel.status == STATUS_NO_SOURCES and not sel.quorum
    assert (sel.lo_s, sel.hi_s, sel.n_sources, sel.n_agree) == (None, None, 0, 0)


def test_touching_endpoints_agree() -> None:
    sel = select_sources([iv("a", 0.0, 1.0), iv("b", 1.0, 2.0)])
    assert sel.status == STATUS_OK and (sel.lo_s, sel.hi_s) == (1.0, 1.0)  # closed: they share the point 1
    chain = select_sources([iv("a", 0.0, 1.0), iv("b", 1.0, 2.0), iv("c", 2.0, 3.0)])
    assert (chain.lo_s, chain.hi_s, chain.n_agree) == (1.0, 2.0, 2)  # coverage 2 at 1 and at 2
    assert chain.truechimers == ("a", "b", "c")
    apart = select_sources([iv("a", 0.0, 1.0), iv("b", 1.0 + 2**-20, 2.0)])
    assert apart.status == STATUS_NO_MAJORITY and apart.reason.startswith("no majority: only 1 of 2 agree")


def test_zero_width_sources() -> None:
    sel = select_sources([SourceInterval("a", 0.5, 0.0), SourceInterval("b", 0.5, 0.0), iv("c", 0.0, 0.25)])
    assert (sel.lo_s, sel.hi_s, sel.falsetickers) == (0.5, 0.5, ("c",))


@pytest.mark.parametrize(
    ("offset_s", "half_width_s"), [(float("nan"), 0.1), (0.0, -0.001), (0.0, float("inf")), (float("inf"), 0)]
)
def test_bad_source_rejected(offset_s: float, half_width_s: float) -> None:
    with pytest.raises(ValueError, match="seconds"):
        SourceInterval("s", offset_s, half_width_s)


def test_duplicate_names_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        select_sources([iv("a", 0, 1), iv("a", 0, 1)])


# --- properties -----------------------------------------------------------------------------------

finite = st.floats(min_value=-100.0, max_value=100.0, allow_nan=False)
width = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)
arbitrary = st.lists(st.tuples(finite, width), min_size=0, max_size=12)


def _sources(pairs: list[tuple[float, float]], prefix: str = "s") -> list[SourceInterval]:
    return [SourceInterval(f"{prefix}{i}", o, w) for i, (o, w) in enumerate(pairs)]


@given(arbitrary)
def test_lo_le_hi_whenever_quorum(pairs: list[tuple[float, float]]) -> None:
    sel = select_sources(_sources(pairs))
    if sel.quorum:
        assert sel.lo_s <= sel.hi_s
        assert sel.marzullo_lo_s is not None and sel.marzullo_hi_s is not None
        assert sel.lo_s <= sel.marzullo_lo_s <= sel.marzullo_hi_s <= sel.hi_s  # Marzullo is inside the hull
        assert len(sel.truechimers) + len(sel.falsetickers) == len(pairs)
    else:
        assert sel.lo_s is None and sel.hi_s is None


@settings(max_examples=300)
@given(
    truth=st.floats(min_value=-10.0, max_value=10.0, allow_nan=False),
    honest=st.lists(st.tuples(st.floats(min_value=-1.0, max_value=1.0), width), min_size=1, max_size=8),
    liars=st.lists(st.tuples(finite, width), min_size=0, max_size=7),
)
def test_truth_inside_whenever_a_strict_majority_holds_it(
    truth: float, honest: list[tuple[float, float]], liars: list[tuple[float, float]]
) -> None:
    assume(len(liars) < len(honest))  # a strict majority is honest
    good = [SourceInterval(f"h{i}", truth + frac * w, w) for i, (frac, w) in enumerate(honest)]
    assume(all(s.lo_s <= truth <= s.hi_s for s in good))  # float rounding could push an end past truth
    sel = select_sources(good + _sources(liars, "liar"))
    assert sel.quorum
    assert sel.lo_s <= truth <= sel.hi_s
    assert {s.name for s in good} <= set(sel.truechimers)  # an honest source is never a falseticker


@given(arbitrary, st.randoms(use_true_random=False))
def test_invariant_to_input_order(pairs: list[tuple[float, float]], rnd: random.Random) -> None:
    srcs = _sources(pairs)
    shuffled = list(srcs)
    rnd.shuffle(shuffled)
    assert select_sources(shuffled) == select_sources(srcs)
