"""The documents' result tables are what their JSON files say (``scripts/render_docs.py``), and
every document the README and the model card link to is in the repository."""
import json
import re
import shutil
import subprocess
import sys

from conftest import ROOT

RENDER = ROOT / "scripts" / "render_docs.py"


def _check(root) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RENDER), "--check", "--root", str(root)], capture_output=True, text=True)


def test_every_rendered_table_matches_its_json():
    r = _check(ROOT)
    assert r.returncode == 0, f"run: python scripts/render_docs.py\n{r.stdout}{r.stderr}"
    readme = (ROOT / "README.md").read_text()
    assert readme.count("<!-- table: ") >= 2, "the README's headline tables are rendered"


def test_a_figure_changed_in_its_json_is_caught_and_rendered(tmp_path):
    """Plant a changed figure in a copy: --check names the table, rendering writes the new value."""
    for f in ("README.md", "docs", "src/granular_mobile/assets/MODEL_CARD.md"):
        src, dst = ROOT / f, tmp_path / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    src_export = ROOT / "src" / "granular_mobile" / "assets" / "export" / "manifest.json"
    (tmp_path / src_export.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / src_export.relative_to(ROOT)).write_text(src_export.read_text())
    m = re.search(r"<!-- table: eval (\S+) -->", (tmp_path / "README.md").read_text())
    assert m, "the README renders an eval table"
    p = tmp_path / m[1]
    data = json.loads(p.read_text())
    data["results"][0]["psnr"] = 12.3456
    p.write_text(json.dumps(data))
    r = _check(tmp_path)
    assert r.returncode == 1 and f"README.md: eval {m[1]}" in r.stdout, r.stdout + r.stderr
    assert subprocess.run([sys.executable, str(RENDER), "--root", str(tmp_path)], capture_output=True).returncode == 0
    assert "12.346" in (tmp_path / "README.md").read_text()
    assert _check(tmp_path).returncode == 0


def test_linked_documents_exist():
    for doc in ("README.md", "src/granular_mobile/assets/MODEL_CARD.md"):
        base = (ROOT / doc).parent
        for link in re.findall(r"\]\(([^)#\s]+)", (ROOT / doc).read_text()):
            if link.startswith(("http://", "https://", "mailto:")):
                continue
            assert (base / link).exists(), f"{doc} links to {link}, which is not in the repository"


def test_the_readme_is_a_page_to_start_from():
    """At most 220 lines (history goes to CHANGELOG.md, analyses to docs/), and every path it
    names in backticks exists (a moved script or folder is caught here)."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 220
    named = set(re.findall(r"`((?:src|docs|scripts|bench|experiments|web_demo|android_demo)/[^`\s]*)`", text))
    assert len(named) >= 5
    missing = sorted(p for p in named if not (ROOT / p.rstrip("/")).exists())
    assert not missing, f"the README names {missing}, which are not in the repository"


def test_a_broken_marker_is_refused_not_swallowed(tmp_path):
    """A table without its end marker would take the prose up to the next table's end."""
    (tmp_path / "README.md").write_text("x\n<!-- table: eval docs/e.json -->\nold\n\nprose\n"
                                        "<!-- table: eval docs/e.json -->\n<!-- /table -->\n")
    r = _check(tmp_path)
    assert r.returncode != 0 and "fix the markers" in r.stdout + r.stderr
    assert "prose" in (tmp_path / "README.md").read_text()
