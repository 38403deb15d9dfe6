"""Every node's VALIDATE_INPUTS keeps the checks ComfyUI skips for the inputs it takes, and copes with
linked inputs (None before the run), as ComfyUI's validate_inputs calls it."""

import inspect

import pytest

from hunyuanvideo_pack.nodes import NODE_CLASSES
from hunyuanvideo_pack.nodes.latent import HunyuanVideoEmptyLatent
from hunyuanvideo_pack.nodes.widget_checks import input_options, validate, value_problem

VALIDATED = [cls for cls in NODE_CLASSES if hasattr(cls, "VALIDATE_INPUTS")]


def _specs(cls) -> dict:
    types = cls.INPUT_TYPES()
    return {**types["required"], **types.get("optional", {})}


def _defaults(cls) -> dict:
    """The values a fresh node holds for the inputs its VALIDATE_INPUTS takes."""
    values = {}
    for name in inspect.signature(cls.VALIDATE_INPUTS).parameters:
        spec = _specs(cls)[name]
        values[name] = input_options(spec).get("default", spec[0][0] if isinstance(spec[0], list) else None)
    return values


def _out_of_range(spec: tuple) -> list:
    options = input_options(spec)
    wrong = ["no such choice"] if isinstance(spec[0], list) else []
    wrong += [options["min"] - 1] if "min" in options else []
    wrong += [options["max"] + 1] if "max" in options else []
    return wrong


def test_there_are_nodes_to_check():
    assert {cls.__name__ for cls in VALIDATED} >= {"HunyuanVideoEmptyLatent", "HunyuanVideoSaveVideo"}


@pytest.mark.parametrize("cls", VALIDATED, ids=lambda cls: cls.__name__)
def test_validate_inputs_names_its_inputs(cls):
    # **kwargs would switch off ComfyUI's range and choice checks for every input of the node.
    kinds = {p.kind for p in inspect.signature(cls.VALIDATE_INPUTS).parameters.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds


@pytest.mark.parametrize("cls", VALIDATED, ids=lambda cls: cls.__name__)
def test_defaults_pass_and_linked_inputs_do_not_raise(cls):
    defaults = _defaults(cls)
    assert cls.VALIDATE_INPUTS(**defaults) is True
    for name in defaults:
        assert cls.VALIDATE_INPUTS(**{**defaults, name: None}) is True, name
    assert cls.VALIDATE_INPUTS(**dict.fromkeys(defaults)) is True


@pytest.mark.parametrize("cls", VALIDATED, ids=lambda cls: cls.__name__)
def test_values_outside_the_widget_limits_are_refused(cls):
    defaults = _defaults(cls)
    checked = 0
    for name in defaults:
        for wrong in _out_of_range(_specs(cls)[name]):
            message = cls.VALIDATE_INPUTS(**{**defaults, name: wrong})
            assert isinstance(message, str) and message.startswith(name), (name, wrong, message)
            checked += 1
    assert checked or not any(_out_of_range(_specs(cls)[name]) for name in defaults)  # e.g. only a file prefix


def test_the_node_check_runs_once_every_value_is_known():
    assert "4k+1" in HunyuanVideoEmptyLatent.VALIDATE_INPUTS(width=848, height=480, frames=72)
    assert HunyuanVideoEmptyLatent.VALIDATE_INPUTS(width=848, height=None, frames=72) is True
    assert HunyuanVideoEmptyLatent.VALIDATE_INPUTS(width=8192, height=480, frames=73) == (
        "width 8192 is above the maximum 4096"
    )


def test_value_problem_messages():
    spec = ("INT", {"min": 1, "max": 3})
    assert value_problem(spec, 0) == "0 is below the minimum 1"
    assert value_problem(spec, 4) == "4 is above the maximum 3"
    assert value_problem(spec, 2) is None
    assert value_problem((["a", "b"],), "c") == "'c' is not one of the choices: 'a', 'b'"
    assert validate({"required": {"n": spec}}, {"n": 9}) == "n 9 is above the maximum 3"
