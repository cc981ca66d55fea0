"""advkit/rng.py is the one seeding module: no other module mixes seeds (numpy's SeedSequence, the seed
stride) or makes a generator per sample (``manual_seed`` inside a loop or comprehension)."""
from __future__ import annotations

import ast
from pathlib import Path

import torch

import advkit
from advkit.rng import SEED_STRIDE, batch_seed, derived_seed, epoch_seed, sample_draw, sample_seeds

ROOT = Path(advkit.__file__).parent
LOOPS = (ast.For, ast.While, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def seeding_outside_rng() -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if path == ROOT / "rng.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "SeedSequence":
                found.append(f"{path.name}:{node.lineno} SeedSequence")
            elif isinstance(node, ast.Constant) and node.value == SEED_STRIDE:
                found.append(f"{path.name}:{node.lineno} the seed stride")
            elif isinstance(node, LOOPS) and any(isinstance(n, ast.Attribute) and n.attr == "manual_seed"
                                                 for n in ast.walk(node)):
                found.append(f"{path.name}:{node.lineno} a generator per item")
    return found


def test_seeds_are_derived_in_rng_alone():
    assert seeding_outside_rng() == []


def test_the_derivations_keep_their_formulas():
    """The numbers every run, checkpoint and fingerprint was made with."""
    assert batch_seed(3, 4) == derived_seed(3, 4) != derived_seed(4, 3)
    assert epoch_seed(2, 5) == 2 * 1_000_003 + 5
    assert sample_seeds(7, torch.tensor([0, 2])).tolist() == [7, 7 + 2 * 1_000_003]


def test_a_sample_draw_row_does_not_depend_on_the_others():
    x = torch.zeros(3, 2)
    alone = sample_draw(x[:1], torch.tensor([11]))((2,), lambda t, g: t.uniform_(generator=g))
    together = sample_draw(x, torch.tensor([5, 11, 6]))((2,), lambda t, g: t.uniform_(generator=g))
    assert torch.equal(together[1], alone[0]) and not torch.equal(together[0], together[1])
    none = sample_draw(x[:0], torch.tensor([], dtype=torch.long))((2,), lambda t, g: t.uniform_(generator=g))
    assert none.shape == (0, 2)
