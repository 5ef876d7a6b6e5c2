"""Nesting and roll-up as pure functions: no files, no clock, no caches."""

from bgmon.engine.family import Member, RollUp, ancestors, families
from bgmon.model import Badge, Health, Reason


def m(id_, parent=None, ref=None, group="g"):
    return Member(group=group, id=id_, parent=parent, parent_ref=ref)


def test_parents_come_from_keys_or_ids_within_the_group():
    fam = families({
        "a": m("A"), "b": m("B", ref="A"), "c": m("C", parent="a"),
        "d": m("D", ref="A", group="other"), "e": m("E", ref="E"), "f": m("F", parent="gone"),
    })
    assert fam.parents == {"a": None, "b": "a", "c": "a", "d": None, "e": None, "f": None}
    assert fam.children == {"a": ["b", "c"]}
    assert fam.cut == {}


def test_a_loop_is_cut_once_and_said_why():
    fam = families({"a": m("A", ref="C"), "b": m("B", ref="A"), "c": m("C", ref="B")})
    # a → c → b → a: the link that closes the loop (b's) is cut; b becomes the root.
    assert list(fam.cut) == ["b"] and "loops back to a" in fam.cut["b"]
    assert fam.parents == {"a": "c", "b": None, "c": "b"}
    assert ancestors(["a"], fam.parents) == {"a", "b", "c"}


def test_roll_up_shows_the_worst_child_and_names_it():
    fam = families({"p": m("P"), "k1": m("K1", ref="P"), "k2": m("K2", ref="P"), "g": m("G", ref="K2")})
    own = {
        "p": Health(Badge.HEALTHY), "k1": Health(Badge.STRUGGLING, (Reason("r", "slow"),)),
        "k2": Health(Badge.HEALTHY), "g": Health(Badge.FAILED, (Reason("exit", "exit 1"),)),
    }
    rolled = RollUp(own.get, str.upper, fam.children)
    assert rolled("k2").badge is Badge.FAILED and "child G is failed" in rolled("k2").summary
    assert rolled("p").badge is Badge.FAILED and "child K2" in rolled("p").summary
    assert rolled("k1") == own["k1"]
    assert RollUp(lambda k: None, str, {})("x").badge is Badge.UNKNOWN
