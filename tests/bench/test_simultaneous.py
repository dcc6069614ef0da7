"""The ratios bench/simultaneous.py prints (and the last line of bench/asgi.py and wsgi.py)."""

from __future__ import annotations

import pytest

from bench.simultaneous import against_bare


def test_ratios_are_per_round_then_median() -> None:
    """Each round's requests and CPU per request against the bare server's in the same round,
    then the median: a round where the whole machine was slow moves both sides alike."""
    bare = [(100, 10.0), (50, 20.0), (200, 5.0)]
    variant = [(90, 11.0), (49, 20.4), (196, 5.5)]
    r = against_bare(variant, bare)
    assert r.median == pytest.approx(0.98)
    assert (r.low, r.high) == pytest.approx((0.9, 0.98))
    assert r.cpu == pytest.approx(1.1)


def test_rounds_must_pair_up() -> None:
    with pytest.raises(ValueError):
        against_bare([(1, 1.0)], [(1, 1.0), (2, 2.0)])
