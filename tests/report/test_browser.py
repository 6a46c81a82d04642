"""The HTML report in a real browser: headless Debian chromium driven by Playwright."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tiny_config

from polytask import Study

CHROMIUM = "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api", reason="the browser test needs the browser extra (playwright)")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no {CHROMIUM}: install Debian's chromium (make test does it when run as root)", allow_module_level=True)


def _luminance(rgb: str) -> float:
    parts = [float(v) for v in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]]
    lin = [(c / 255) / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in parts]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.fixture(scope="module")
def report(tmp_path_factory, tiny_family_module):
    out = tmp_path_factory.mktemp("browser") / "study"
    cfg = tiny_config(tiny_family_module, seeds=3, fractions=[0.5, 1.0], strategies=["scratch", "fine-tune", "feature-extraction", "mtl"])
    Study(cfg, data=tiny_family_module).run(out, progress=False)
    return out


@pytest.fixture(scope="module")
def tiny_family_module():
    from polytask.data import make_task_family

    return make_task_family(n_tasks=3, n_target=60, n_source=200, n_test=100, n_features=6, seed=0)


def test_the_report_loads_without_errors_with_every_plot_and_table(report):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((report / "report.html").resolve().as_uri())
        page.wait_for_load_state("load")
        assert errors == []
        images = page.evaluate("() => [...document.images].map(i => ({ok: i.complete, w: i.naturalWidth, h: i.naturalHeight, alt: i.alt}))")
        # Per task: the bars, the data-efficiency curve (two fractions) and the paired differences.
        assert len(images) >= 3 and all(i["ok"] and i["w"] > 100 and i["h"] > 50 and len(i["alt"]) > 20 for i in images), images
        headings = page.evaluate("() => [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')].map(h => [Number(h.tagName[1]), h.textContent])")
        assert headings[0][0] == 1 and all(b[0] - a[0] <= 1 for a, b in zip(headings, headings[1:])), headings
        titles = [t for _, t in headings]
        assert "Verdicts" in titles and "Recommendation" in titles
        assert page.locator("#verdicts tbody tr").count() == 2 * 4  # 2 fractions x 4 strategies, readable without the plots
        # Sortable: the mean column ascending, then descending.
        mean = page.locator("#verdicts th", has_text="mean").first
        mean.click()
        values = [float(v) for v in page.locator("#verdicts tbody tr td:nth-child(5)").all_text_contents()]
        assert values == sorted(values)
        mean.click()
        values = [float(v) for v in page.locator("#verdicts tbody tr td:nth-child(5)").all_text_contents()]
        assert values == sorted(values, reverse=True)
        shot = report / "report.png"  # kept beside the report in the test's folder, as an artifact
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
        # Legible in light, dark and print: body text against its background (WCAG AA, 4.5:1).
        for media, scheme in (("screen", "light"), ("screen", "dark"), ("print", "light")):
            page.emulate_media(media=media, color_scheme=scheme)
            fg, bg = page.evaluate("() => { const s = getComputedStyle(document.body); return [s.color, s.backgroundColor]; }")
            bg = "rgb(255, 255, 255)" if bg in ("rgba(0, 0, 0, 0)", "transparent") else bg
            assert _contrast(fg, bg) >= 4.5, (media, scheme, fg, bg)
        browser.close()
