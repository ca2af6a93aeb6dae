"""The technician tools' words: one table per language, every message made from a code."""

from __future__ import annotations

import ast
import copy
import pickle
import string
from pathlib import Path

import pytest

from edge.config import parse_config
from edge.errors import ConfigError, Reason
from edge.words import Words
from edge.words.en import EN
from edge.words.id import ID

EDGE = Path(__file__).resolve().parents[2] / "edge"


def fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_words_both_languages_have_every_code():
    assert set(EN) == set(ID)
    assert not [k for k, v in ID.items() if not v.strip()]


def test_words_a_code_the_english_says_with_params_is_said_with_the_same_params():
    """An Indonesian message uses only what its English one is given (where the English
    is made from the code; "{msg}" and "{error}" stand for a library's own words)."""
    own = {k: v for k, v in EN.items() if "{msg}" not in v and "{error}" not in v
           and k != "hopper_pin_used"}  # its English {other} holds the {name} it says
    wrong = {k: fields(ID[k]) - fields(v) for k, v in own.items() if fields(ID[k]) - fields(v)}
    assert wrong == {}


def test_words_every_config_problem_in_edge_is_raised_by_code():
    """No ``FieldProblem`` or ``Reason`` is built from ready-made English: the second
    argument of a FieldProblem (the first of a Reason) is a code of the tables, or a
    ``Reason`` passed on."""
    found = []
    for path in EDGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            index = {"FieldProblem": 1, "Reason": 0}.get(node.func.id)
            if index is None or len(node.args) <= index:
                continue
            arg = node.args[index]
            if isinstance(arg, ast.Constant):
                assert arg.value in EN, f"{path.name}:{node.lineno}: unknown code {arg.value!r}"
                found.append(arg.value)
            elif isinstance(arg, ast.JoinedStr):
                ok = ast.unparse(arg).startswith("f'no_{")  # no_output / no_input
                assert ok, f"{path.name}:{node.lineno}: a message made in place"
            else:
                assert isinstance(arg, ast.Name | ast.Subscript | ast.Starred | ast.Attribute), \
                    f"{path.name}:{node.lineno}: {ast.unparse(arg)}"
    assert len(found) > 40


def test_words_a_reason_keeps_its_code_through_copy_and_pickle():
    reason = Reason("zone_twice", name="lawn")
    assert reason == "zone 'lawn' defined twice"
    for again in (copy.deepcopy(reason), pickle.loads(pickle.dumps(reason))):
        assert again == reason and again.code == "zone_twice" and again.params == {"name": "lawn"}
    assert Words("id").reason(reason) == "zona 'lawn' ditulis dua kali"
    assert Words("id").reason("plain words") == "plain words"


def test_words_unknown_language_is_refused():
    with pytest.raises(ValueError, match="unknown language 'jv'"):
        Words("jv")


FEEDER = {
    "kind": "fish_feeder",
    "unit": {"device_id": "dp3-uji-01", "opd": "dp3"},
    "outputs": [{"name": "auger", "pin": 17, "max_on_s": 60}],
    "feeders": [{"name": "pakan", "pond": "kolam", "motor": "auger", "rate_g_per_s": 10,
                 "max_dose_g": 300, "max_daily_g": 1000, "confirm_by": "none"}],
    "ponds": [{"name": "kolam", "species": "nila", "plan": {"times": ["07:00"],
                                                             "doses_g": [100]}}],
}


@pytest.mark.parametrize(("change", "field", "indonesian"), [
    ({"feeders": [{**FEEDER["feeders"][0], "max_dose_g": 900}]}, "feeders[pakan].max_dose_g",
     "900 g dengan 10 g/dtk butuh 90 dtk, lebih dari max_on_s keluaran 'auger' = 60"),
    ({"ponds": [{**FEEDER["ponds"][0], "plan": {"times": ["7:00"], "doses_g": [100]}}]},
     "ponds[kolam].plan.times", "waktu '7:00' bukan HH:MM (24 jam)"),
    ({"ponds": [{**FEEDER["ponds"][0], "thresholds": {"ph_min": 9, "ph_max": 8}}]},
     "ponds[kolam].thresholds.ph_min", "ph_min harus di bawah ph_max"),
    ({"ponds": [{**FEEDER["ponds"][0], "species": "hiu"}]}, "ponds[kolam].species",
     "harus salah satu dari: 'nila', 'lele', 'bandeng', 'vaname' (isinya 'hiu')"),
])
def test_words_fish_feeder_problems_in_bahasa_indonesia(change, field, indonesian):
    with pytest.raises(ConfigError) as info:
        parse_config({**FEEDER, **change})
    said = dict(zip([f for f, _ in info.value.problems], Words("id").problems(info.value),
                    strict=True))
    assert said[field] == f"{field}: {indonesian}"
