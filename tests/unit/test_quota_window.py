"""Quota pacing: the reset instant narrowed from rounded-up `resets-after` headers."""

from __future__ import annotations

from hotpatch.azure.resource_graph import _QuotaWindow


def test_no_wait_while_quota_remains() -> None:
    window = _QuotaWindow()
    window.observe(now=0.0, remaining=3, resets_after=5)
    assert window.wait(now=0.1) == 0.0


def test_a_spent_quota_waits_for_the_earliest_upper_bound_of_the_reset() -> None:
    window = _QuotaWindow()
    # The window opened at 0.0 and lasts 5 s; answers round the time left up to whole seconds.
    window.observe(now=0.05, remaining=2, resets_after=5)  # reset in (4.05, 5.05]
    window.observe(now=0.98, remaining=1, resets_after=5)  # (4.98, 5.98]
    window.observe(now=1.02, remaining=0, resets_after=4)  # (4.02, 5.02]: the tightest
    assert abs(window.wait(now=1.10) - (5.02 - 1.10)) < 1e-9


def test_a_new_window_starts_a_new_estimate() -> None:
    window = _QuotaWindow()
    window.observe(now=0.0, remaining=0, resets_after=5)
    # Past the old reset: a fresh window, even though `remaining` did not rise.
    window.observe(now=6.0, remaining=0, resets_after=5)
    assert window.wait(now=6.0) == 5.0


def test_remaining_rising_means_the_window_reset() -> None:
    window = _QuotaWindow()
    window.observe(now=0.0, remaining=1, resets_after=2)
    window.observe(now=1.5, remaining=14, resets_after=5)
    window.observe(now=1.6, remaining=0, resets_after=5)
    assert abs(window.wait(now=1.6) - 4.9) < 1e-9


def test_an_answer_that_does_not_lower_remaining_comes_from_a_new_window() -> None:
    # The first query opened a window at 8.5 and took 5 s to answer (reset bound 13.56 + 5);
    # the second arrived after that window closed and opened another: remaining is 14 again.
    window = _QuotaWindow()
    window.observe(now=13.56, remaining=14, resets_after=5)
    window.observe(now=13.63, remaining=14, resets_after=5)
    for step in range(1, 15):
        window.observe(now=13.63 + step * 0.01, remaining=14 - step, resets_after=5)
    assert window.remaining == 0
    assert window.wait(now=14.0) >= 13.63 + 5 - 14.0


def test_a_refused_query_keeps_the_window() -> None:
    window = _QuotaWindow()
    window.observe(now=0.0, remaining=0, resets_after=3)
    window.observe(now=0.5, remaining=0, resets_after=3)  # a 429 answer: counted nothing
    assert window.wait(now=0.5) == 2.5  # the reset stays at 3.0
