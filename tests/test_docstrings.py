"""Public functions and classes list their parameters in an ``Args:`` section (Google style): every
attack's constructor, the defenses, evaluate, fit and accuracy, data.load and the models."""
from __future__ import annotations

import inspect
import re

import pytest

import advkit
from advkit import attacks, defenses, models
from advkit.attacks.advgan import AdvGAN


def public(module) -> list:
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    return [getattr(module, n) for n in names if getattr(getattr(module, n), "__module__", "").startswith(
        module.__name__) and (inspect.isfunction(getattr(module, n)) or inspect.isclass(getattr(module, n)))]


ATTACK_CLASSES = [c for c in public(attacks) if isinstance(c, type) and issubclass(c, attacks.Attack)] + [AdvGAN]
DOCUMENTED = [
    *ATTACK_CLASSES, attacks.from_torchattacks, attacks.generate, attacks.sample_loss, attacks.succeeded,
    *(f for f in public(defenses) if inspect.isfunction(f)),
    advkit.evaluate, advkit.train.fit, advkit.train.accuracy, advkit.data.load,
    *public(models),
]


def documented_args(doc: str) -> set[str]:
    """The names an ``Args:`` section of ``doc`` lists (``**kwargs`` as ``kwargs``)."""
    section = re.search(r"^([ ]*)Args:\n(.*?)(?=^\1\S|\Z)", doc, re.S | re.M)
    assert section, "no Args: section"
    indent = len(section.group(1)) + 4
    return {m.group(1) for m in re.finditer(rf"^ {{{indent}}}\**(\w+):", section.group(2), re.M)}


@pytest.mark.parametrize("thing", DOCUMENTED, ids=lambda t: t.__qualname__)
def test_public_callables_list_every_parameter_in_args(thing):
    init = thing.__init__ if isinstance(thing, type) else thing  # a class: its constructor's parameters
    parameters = [n for n in inspect.signature(init).parameters if n != "self"]
    docs = [inspect.getdoc(d) or "" for d in ((thing.__init__, thing) if isinstance(thing, type) else (thing,))]
    sections = [d for d in docs if "Args:" in d]
    if not parameters:  # nothing to list (MaxPool2x2)
        return
    assert sections, f"{thing.__qualname__} has no Args: section"
    listed = set().union(*map(documented_args, sections))
    assert set(parameters) <= listed, f"{thing.__qualname__}: not in Args: {sorted(set(parameters) - listed)}"


def test_the_check_reads_an_args_section_as_written():
    doc = "Summary.\n\nArgs:\n    a: one.\n    **kwargs: more,\n        continued.\n\nReturns:\n    b: not an arg.\n"
    assert documented_args(doc) == {"a", "kwargs"}
    with pytest.raises(AssertionError, match="no Args: section"):
        documented_args("Summary only.")
