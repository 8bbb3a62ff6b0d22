"""The documentation site builds with `mkdocs build --strict` (a broken link, a missing page or an API reference that
cannot be read fails it), and holds what it promises: the README as the front page with its links working, the
architecture, the experiments, the four notebooks rendered as stored, and the API of tasks, lab and probes."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_the_docs_site_builds_strict_with_every_page(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    front = (site / "index.html").read_text()
    assert "how do transformers learn in context?" in front and 'href="experiments/"' in front  # README, links fixed
    for page in ["ARCHITECTURE", "experiments", "sweeps", "tasks"]:
        assert (site / page / "index.html").is_file(), page
    books = sorted(p.stem for p in (ROOT / "docs" / "notebooks").glob("*.ipynb"))
    assert len(books) >= 4 and all("import" in (site / "notebooks" / b / "index.html").read_text() for b in books)
    api = {pkg: (site / "api" / pkg / "index.html").read_text() for pkg in ("tasks", "lab", "probes")}
    assert 'id="tasks.linear_regression.LinearRegression"' in api["tasks"]
    assert 'id="lab.trainer.train"' in api["lab"] and 'id="lab.sweeps.Measures"' in api["lab"]
    assert 'id="probes.solvers.solve"' in api["probes"] and 'id="probes.sweeps.sweep"' in api["probes"]


def test_a_broken_link_fails_the_strict_build(tmp_path):
    """--strict is what makes the test above worth having: a page with a link to nowhere stops the build."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\n[gone](no-such-page.md)\n")
    (tmp_path / "mkdocs.yml").write_text("site_name: x\n")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode != 0 and "no-such-page.md" in proc.stderr
