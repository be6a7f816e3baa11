"""Which filters go on the wire when a session's filters overlap."""

from __future__ import annotations

import pytest

from runtime.overlap import CopyRule, covers, may_overlap, plan_wire


@pytest.mark.parametrize(
    ("general", "specific", "expected"),
    [
        ("#", "x/+/temp", True),
        ("x/#", "x", True),  # `#` matches its parent level too
        ("x/+/temp", "#", False),
        ("+/+/temp", "x/+/temp", True),
        ("x/+/temp", "x/a/temp", True),
        ("x/a/temp", "x/+/temp", False),
        ("x/+", "x/#", False),
        ("#", "$SYS/broker/uptime", False),  # wildcards never match `$` topics
        ("+/#", "$SYS/#", False),
        ("$SYS/#", "$SYS/broker/+", True),
        ("a/b", "a/b", True),
        ("a/b", "a/b/c", False),
    ],
)
def test_covers(general: str, specific: str, expected: bool) -> None:
    assert covers(general, specific) is expected


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("a/+/c", "a/b/+", True),
        ("a/+/c", "a/b/d", False),
        ("a", "a/#", True),
        ("a/b", "a/#", True),
        ("a", "a/+", False),
        ("#", "$SYS/#", False),
        ("+/x", "$a/x", False),
        ("a/b/c", "a/b/c", True),
    ],
)
def test_may_overlap(first: str, second: str, expected: bool) -> None:
    assert may_overlap(first, second) is expected
    assert may_overlap(second, first) is expected


def test_a_covered_filter_rides_on_the_covering_one() -> None:
    plan = plan_wire({"#": 1, "x/+/temp": 1, "$SYS/#": 0})
    assert plan.wire == {"#": 1, "$SYS/#": 0}
    assert plan.carried_by == {"#": "#", "x/+/temp": "#", "$SYS/#": "$SYS/#"}
    assert plan.overlapping is False


def test_a_covered_filter_at_a_higher_qos_keeps_its_own_subscription() -> None:
    plan = plan_wire({"#": 0, "x/+/temp": 2})
    assert plan.wire == {"#": 0, "x/+/temp": 2}
    assert plan.overlapping is True


def test_filters_covering_each_other_keep_one_and_chains_reach_the_top() -> None:
    plan = plan_wire({"+/#": 1, "#": 1, "a/#": 1, "a/b/c": 0})
    assert plan.wire == {"#": 1}
    assert set(plan.carried_by.values()) == {"#"}


def test_shared_filters_are_never_merged() -> None:
    plan = plan_wire({"$share/g/#": 1, "$share/g/x/+": 1})
    assert plan.wire == {"$share/g/#": 1, "$share/g/x/+": 1}


def test_the_copy_with_the_lowest_matching_identifier_is_kept() -> None:
    rule = CopyRule({"a/+/c": 1, "a/b/+": 2, "z/#": 3})
    assert rule.keeps("a/b/c", [1]) is True
    assert rule.keeps("a/b/c", [2]) is False
    assert rule.keeps("a/b/c", [1, 2]) is True  # one copy for both
    assert rule.keeps("a/b/z", [2]) is True
    assert rule.keeps("elsewhere", [9]) is True
