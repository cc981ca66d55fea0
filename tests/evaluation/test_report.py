"""Report files: they exist and parse, the HTML page renders in headless Chromium without console
errors, and the CLI's evaluate and quick demo write them."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import types

import matplotlib.image
import pytest
import torch

import advkit
from advkit.app.cli import main
from advkit.attacks import PGD
from advkit.evaluation.checks import CHECKS

#: The module's tests share a heavy module-scoped fixture: one xdist worker runs them all (conftest.py).
pytestmark = pytest.mark.xdist_group("report")


@pytest.fixture(scope="module")
def saved(trained_cnn, test_batch, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    x, y = test_batch[0][:48], test_batch[1][:48]
    rep = advkit.evaluate(trained_cnn, (x, y), attacks={"fgsm": "fgsm", "pgd-5": lambda m: PGD(m, steps=5)},
                          eps=[0, 0.1, 0.2], probe=16, queries=100, progress=False, device="cpu")
    picture = out / "extra.png"
    matplotlib.image.imsave(picture, torch.rand(8, 8).numpy())
    rep.add_section("Extra part", "Some *markdown* <b>escaped</b>.\n\n![Extra picture](extra.png)\n\n- a *list*",
                    [picture])
    return rep, rep.save(out)


def test_files_exist_and_parse(saved):
    rep, html_path = saved
    out = html_path.parent
    data = json.loads((out / "report.json").read_text())
    assert data["config"]["eps"] == [0.0, 0.1, 0.2] and data["seed"] == 0
    assert {"advkit", "torch", "torchattacks"} <= set(data["versions"]) and data["device"] == "cpu"
    assert data["checks"]["passed"] + data["checks"]["failed"] + data["checks"]["skipped"] == len(CHECKS)
    model = data["models"]["model"]
    assert set(model["curves"]) == {"fgsm", "pgd-5", "worst"} and model["seconds"]["checks"] > 0
    point = model["curves"]["pgd-5"][1]
    assert point["ci95"][0] <= point["accuracy"] <= point["ci95"][1] and point["forwards"] > 0
    assert [p["accuracy"] for p in model["curves"]["worst"]] == [a for _, a in rep.curve["worst"]]
    assert data["sections"][0]["images"] == ["extra.png"]
    assert data["files"] == ["curve.png", "examples_model.png", "extra.png", "report.md", "report.html", "report.json"]
    md = (out / "report.md").read_text()
    assert "| eps | fgsm | pgd-5 | worst |" in md and "![accuracy versus eps](curve.png)" in md
    assert md.count("(extra.png)") == 1  # the section shows its picture; save does not add it again
    assert "| pgd-5 | ran | PGD-5, alpha 2.5·eps/5, eps ∈ {0.1, 0.2}; PGD(" in md and "eps=0.031" not in md
    assert "survivors only, each eps warm-started from the last." in md
    for png in ("curve.png", "examples_model.png", "extra.png"):
        assert matplotlib.image.imread(out / png).ndim == 3
    page = html_path.read_text()
    assert page.count("data:image/png;base64,") == 3 and "src=\"http" not in page
    assert "<p>Some <em>markdown</em> &lt;b&gt;escaped&lt;/b&gt;.</p>" in page
    assert '<p><img src="data:image/png;base64,' in page and 'alt="Extra picture"' in page and "![" not in page
    assert "<ul><li>a <em>list</em></li></ul>" in page


def test_curve_legend_shows_the_band_and_each_clean_level_and_attacks_lie_on_top(saved):
    import dataclasses

    from advkit.evaluation.plot import curve_figure

    res = saved[0]["model"]
    fig = curve_figure([dataclasses.replace(res, name="a"), dataclasses.replace(res, name="b")], "linf")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    clean = f"{res.clean_accuracy:.1%}"
    for model in ("a", "b"):
        assert {f"{model}: worst case, 95% interval", f"{model}: worst case", f"{model}: clean {clean}",
                f"{model}: fgsm", f"{model}: pgd-5"} <= set(labels)
    assert len(ax.texts) == 0  # no labels drawn on the plot, where two models' would collide
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["a: pgd-5"].get_zorder() > lines["a: worst case"].get_zorder()
    assert lines["a: pgd-5"].get_marker() != lines["a: fgsm"].get_marker() != "None"
    assert lines["a: pgd-5"].get_linestyle() != lines["b: pgd-5"].get_linestyle()


def render(path, tmp_path):
    """Headless Chromium's DOM of ``path`` and the console lines it logged (the ``browser`` marker's
    check in conftest.py skips, or under CI fails, a test where Chromium is missing)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000", "--dump-dom", path.as_uri()]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [line for line in proc.stderr.splitlines() if "CONSOLE" in line]


@pytest.mark.browser
def test_html_renders_in_headless_chromium_without_console_errors(saved, tmp_path):
    dom, console = render(saved[1], tmp_path)
    assert console == []
    assert 'data-images-ok="yes"' in dom and "advkit robustness report" in dom and "Sanity checks" in dom
    broken = tmp_path / "broken.html"  # the same check sees a picture that does not decode
    broken.write_text(saved[1].read_text().replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1))
    dom, console = render(broken, tmp_path)
    assert 'data-images-ok="no"' in dom and any("image failed to load" in line for line in console)


def test_cli_evaluate_writes_the_report(trained_cnn, tmp_path, capsys):
    ckpt = tmp_path / "cnn.pt"
    torch.save(trained_cnn.state_dict(), ckpt)
    rc = main(["evaluate", "--model", str(ckpt), "--arch", "smallcnn", "--data", "mnist5k", "--attacks", "fgsm",
               "--eps", "0,0.1", "--n", "24", "--probe", "8", "--queries", "50", "--device", "cpu",
               "--out", str(tmp_path / "rep"), "--no-progress", "--fresh-starts"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| eps | fgsm | worst |" in printed and str((tmp_path / "rep" / "report.html").resolve()) in printed
    config = json.loads((tmp_path / "rep" / "report.json").read_text())["config"]
    assert config["n"] == 24 and config["warm_start"] is False


def counted_attacks(monkeypatch, module, function: str) -> dict[str, list[tuple[int, int, int]]]:
    """Wrap ``module.function`` so that, while it runs, every attack call is recorded: attack class ->
    (samples, forwards, backwards) of each ``run``, in order."""
    from advkit.attacks import Attack

    counts: dict[str, list[tuple[int, int, int]]] = {}
    wrapped, run = getattr(module, function), Attack.run

    def recording(self, x, *args, **kwargs):
        res = run(self, x, *args, **kwargs)
        counts.setdefault(type(self).__name__, []).append((len(x), res.forwards, res.backwards))
        return res

    def counting(*args, **kwargs):
        monkeypatch.setattr(Attack, "run", recording)
        try:
            return wrapped(*args, **kwargs)
        finally:
            monkeypatch.setattr(Attack, "run", run)

    monkeypatch.setattr(module, function, counting)
    return counts


@pytest.mark.slow  # the whole quick demo: two trainings, AdvGAN, two evaluations with checks
def test_quick_demo_writes_the_report_with_later_sections(tmp_path, capsys, monkeypatch):
    """The quick demo's report, its AdvGAN section beside PGD in counted passes, the later sections (a
    provider that takes ``progress`` gets it), and its numbered phase lines on stderr, each with its result."""
    from advkit.app import demo

    counts = counted_attacks(monkeypatch, demo, "advgan_section")
    seen = {}

    def demo_section(out_dir, quick, seed, progress):
        seen["progress"] = progress
        picture = out_dir / "gan.png"
        matplotlib.image.imsave(picture, torch.rand(4, 4).numpy())
        return {"title": "GAN", "markdown": f"quick={quick} seed={seed}", "images": [picture]}

    monkeypatch.setitem(sys.modules, "fake_part", types.SimpleNamespace(demo_section=demo_section))
    monkeypatch.setattr(demo, "SECTION_PROVIDERS", ("fake_part", "not_installed_part"))
    assert main(["demo", "--quick", "--device", "cpu", "--out", str(tmp_path)]) == 0
    printed, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("[")]
    assert [line[:5] for line in lines] == [f"[{i}/5]" for i in (1, 1, 2, 2, 3, 3, 4, 4, 5, 5)]
    assert "training a SmallCNN on mnist5k (2 epochs, cpu)" in lines[0] and "trained: test accuracy" in lines[1]
    assert "fast adversarial training (FGSM-RS) at eps 0.2, 1 epochs" in lines[2] and "defended: test" in lines[3]
    assert "fgsm, apgd-10 at 5 eps on 200 test digits" in lines[4] and "checks passed" in lines[5]
    assert "worst case at eps 0.2 " in lines[5] and "points after the defense (set by " in lines[5]
    assert "AdvGAN: a generator trained 60 steps" in lines[6] and "AdvGAN leaves" in lines[7]
    assert "GAN: done" in lines[9] and seen == {"progress": True}
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["models"]["standard"]["clean_accuracy"] > 0.8
    advgan, *later = data["sections"]
    assert later == [{"title": "GAN", "markdown": "quick=True seed=0", "images": ["gan.png"]}]
    # AdvGAN beside PGD: (name, accuracy %, ms per image) rows; the generator weakens the model (measured:
    # 23.5% left; 16.0-23.5% on seeds 0-2) in one forward pass per image, where PGD taking every step makes
    # 10 forwards and 10 backwards per image: counted passes of the model, not the machine's milliseconds
    rows = [line.split(" | ") for line in advgan["markdown"].splitlines() if line.startswith("| AdvGAN")
            or line.startswith("| PGD")]
    accuracy = {row[0][2:]: float(row[1].rstrip("%")) for row in rows}
    assert set(accuracy) == {"AdvGAN (60 steps)", "PGD-10", "PGD-10, every step"}
    assert accuracy["AdvGAN (60 steps)"] < 0.6 * 100 * data["models"]["standard"]["clean_accuracy"]
    (n, advgan_forwards, advgan_backwards), = counts["AdvGAN"]
    (_, _, early_backwards), (_, every_forwards, every_backwards) = counts["PGD"]
    assert n == demo.QUICK.n and advgan_backwards == 0 and advgan_forwards <= 2 * n  # the clean and the adversarial
    assert every_backwards == 10 * n and early_backwards < every_backwards and every_forwards >= 10 * n
    assert "| eps | standard/fgsm | standard/apgd-10 | standard/worst | defended/fgsm |" in printed
    assert "| clean accuracy |" in printed and "report.html" in printed
    worst = [p["accuracy"] for p in data["models"]["standard"]["curves"]["worst"]]
    assert worst[-1] < 0.2 < worst[0]
    # the attacked model, then the defended one, on one plot and in the comparison
    assert list(data["models"]) == ["standard", "defended"] and data["baseline"] == "standard"
    assert "comparison.png" in data["files"]
    gain = data["comparisons"]["defended"]["robust_accuracy"]["worst"]["gain"]
    # measured: +26.5 points at eps 0.2 (15.5% -> 42.0%); 0.1 is about 4 binomial deviations of the difference below
    assert gain[data["config"]["eps"].index(0.2)] > 0.1
