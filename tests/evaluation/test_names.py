"""Names are data, never markup or paths: every model has its own files, plots show names as they
are (no math parsing, no hidden legend entries), and report.md shows them as text."""
from __future__ import annotations

import json
import re

import pytest
import torch

import advkit
from advkit.evaluation.plot import comparison_figure, curve_figure, example_files, examples_figure, png_bytes
from advkit.gan.report import plot_losses, plot_points

HOSTILE = '<img src=x onerror="alert(1)"> a|b *c* _d_ [e](f) `g` $x^$ #'


def evaluate(names, n=8, **kwargs):
    """A cheap report of small untrained CNNs named ``names`` (each its own weights), with grids."""
    torch.manual_seed(0)
    models = {name: advkit.models.SmallCNN().eval() for name in names}
    x = torch.rand(n, 1, 28, 28)
    y = next(iter(models.values()))(x).argmax(1)
    return advkit.evaluate(models, (x, y), attacks=["fgsm"], eps=[0, 0.1], progress=False, checks=False,
                           device="cpu", examples=2, **kwargs)


def test_models_whose_names_give_one_file_name_get_their_own_grids(tmp_path):
    rep = evaluate(["a b", "a_b"])
    rep.save(tmp_path)
    files = json.loads((tmp_path / "report.json").read_text())["files"]
    assert [f for f in files if f.startswith("examples_")] == ["examples_a_b.png", "examples_a_b-2.png"]
    assert (tmp_path / "examples_a_b.png").read_bytes() != (tmp_path / "examples_a_b-2.png").read_bytes()
    md = (tmp_path / "report.md").read_text()
    sections = md.split("## a\\_b: clean accuracy")
    assert "(examples_a_b.png)" in sections[0] and "(examples_a_b-2.png)" in sections[1]
    page = (tmp_path / "report.html").read_text()
    grids = re.findall(r'src="data:image/png;base64,([^"]+)" alt="examples for (a b|a_b)"', page)
    assert [name for _, name in grids] == ["a b", "a_b"] and grids[0][0] != grids[1][0]


def test_example_file_names_are_unique_safe_and_short():
    names = ["a b", "a_b", "a_b-2", "A B", "../../etc/passwd", "x" * 300, ""]
    files = example_files(names)
    assert files == {"a b": "examples_a_b.png", "a_b": "examples_a_b-2.png", "a_b-2": "examples_a_b-2-2.png",
                     "A B": "examples_A_B-3.png", "../../etc/passwd": "examples_.._.._etc_passwd.png",
                     "x" * 300: f"examples_{'x' * 60}.png", "": "examples_.png"}
    assert len({f.casefold() for f in files.values()}) == len(names) and not any("/" in f for f in files.values())


@pytest.fixture(scope="module")
def dollars():
    return evaluate(["$x^$", "_b"])


def test_a_name_with_dollars_is_saved_and_shown_literally(dollars, tmp_path):
    dollars.save(tmp_path)  # matplotlib's math parser is never asked
    fig = curve_figure(list(dollars.results.values()), "linf")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "$x^$: fgsm" in labels and "_b: fgsm" in labels  # a leading "_" does not hide an entry
    png_bytes(fig)
    before, after = dollars["$x^$"], dollars["_b"]
    fig = comparison_figure(before, [after], "linf")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "gain of _b over $x^$" in labels and "_b: worst case (95% band)" in labels
    png_bytes(fig)
    grid = examples_figure(before.examples, "$x^$: clean / adversarial / perturbation")
    png_bytes(grid)
    assert grid._suptitle.get_text().startswith("$x^$")


def test_an_attack_named_with_dollars_is_drawn_literally():
    torch.manual_seed(0)
    model = advkit.models.SmallCNN().eval()
    x = torch.rand(4, 1, 28, 28)
    rep = advkit.evaluate(model, (x, model(x).argmax(1)), attacks={"$a^$": "fgsm"}, eps=[0, 0.1], progress=False,
                          checks=False, device="cpu", examples=2)
    fig = curve_figure(list(rep.results.values()), "linf")
    assert "$a^$" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    png_bytes(fig)
    png_bytes(examples_figure(rep["model"].examples, "model"))


def test_gan_plot_titles_are_literal(tmp_path):
    path = plot_points(torch.randn(50, 2), torch.zeros(2, 2), tmp_path / "ring.png", title="$x^$ modes")
    assert path.stat().st_size > 0


def test_gan_plots_leave_the_users_matplotlib_backend(tmp_path):
    """They draw on their own canvas: a user's backend (here pdf) is what it was."""
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("pdf")
    try:
        plot_points(torch.randn(50, 2), torch.zeros(2, 2), tmp_path / "ring.png")
        plot_losses({"d_loss": [1.0, 0.5, 0.2], "g_loss": [0.3, 0.6, 0.9]}, tmp_path / "losses.png")
        assert matplotlib.get_backend() == "pdf"
    finally:
        matplotlib.use(before)
    assert all((tmp_path / name).read_bytes()[:4] == b"\x89PNG" for name in ("ring.png", "losses.png"))


def test_report_md_shows_names_as_text(tmp_path):
    rep = evaluate([HOSTILE, "plain"], n=4, baseline=HOSTILE)
    rep.add_section(f"Section {HOSTILE}", "Some *markdown* <b>raw</b> and `<code>`.")
    md = rep.markdown()
    assert "<img" not in md and "<b>" not in md and "`<code>`" in md and "&lt;b>raw&lt;/b>" in md
    text = ('&lt;img src=x onerror="alert(1)"&gt; a\\|b \\*c\\* \\_d\\_ \\[e\\](f) \\`g\\` \\$x^\\$ \\#')
    assert f"## {text}: clean accuracy" in md and f"## Section {text}" in md
    assert f"## Before and after: {text} → plain" in md

    def cells(line):  # a Markdown table row's cells, split at its unescaped pipes
        return re.split(r"(?<!\\)\|", line)[1:-1]

    summary = md.split("### Summary (change: plain − ")[1].splitlines()
    assert cells(summary[2]) == ["  ", f" {text} ", " plain ", " change "]
    assert len(cells(summary[4])) == 4  # the rows have as many cells as the header
    printed = rep.table().splitlines()[0]
    assert cells(printed)[:2] == [" eps ", f" {text}/fgsm "] and len(cells(printed)) == 5
    assert "&lt;img" in (rep.save(tmp_path)).read_text()  # report.html escaped them already


def test_section_pictures_named_alike_keep_their_own_files(tmp_path):
    """Two sections with a different plot.png each, one with a curve.png of its own and one that
    shows the first section's very picture: four pictures, each section shows its own."""
    import matplotlib.image

    rep = evaluate(["m"], n=4)
    pictures = {}
    for k, name in enumerate(["one/plot.png", "two/plot.png", "three/curve.png"]):
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True)
        matplotlib.image.imsave(path, torch.full((4, 4), k / 3).numpy(), vmin=0, vmax=1)
        pictures[name] = path
    rep.add_section("One", "![first](plot.png)", [pictures["one/plot.png"]])
    rep.add_section("Two", "![second](plot.png)", [pictures["two/plot.png"]])
    rep.add_section("Three", "![own curve](curve.png) and ![first again](plot.png)",
                    [pictures["three/curve.png"], pictures["one/plot.png"]])
    out = tmp_path / "rep"
    rep.save(out)
    data = json.loads((out / "report.json").read_text())
    assert [s["images"] for s in data["sections"]] == [["plot.png"], ["plot-2.png"], ["curve-2.png", "plot.png"]]
    assert (out / "plot.png").read_bytes() == pictures["one/plot.png"].read_bytes()
    assert (out / "plot-2.png").read_bytes() == pictures["two/plot.png"].read_bytes()
    assert (out / "curve-2.png").read_bytes() == pictures["three/curve.png"].read_bytes()
    assert (out / "curve.png").read_bytes() != (out / "curve-2.png").read_bytes()  # the report's own plot stays
    md = (out / "report.md").read_text()
    assert "![second](plot-2.png)" in md and "![own curve](curve-2.png) and ![first again](plot.png)" in md
    page = (out / "report.html").read_text()
    shown = {alt: data for data, alt in re.findall(r'src="data:image/png;base64,([^"]+)" alt="([^"]+)"', page)}
    assert shown["first"] == shown["first again"]
    assert len({shown["first"], shown["second"], shown["own curve"], shown["accuracy versus eps"]}) == 4
