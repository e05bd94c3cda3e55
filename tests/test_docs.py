"""The API reference builds with one command and documents every public name."""

import subprocess
from pathlib import Path

import gouache

ROOT = Path(__file__).resolve().parents[1]


def test_api_reference_builds_and_covers_public_names(tmp_path):
    res = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-docs"), str(tmp_path)],
        capture_output=True,
        text=True,
        env={"PYTHON": __import__("sys").executable, "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 0, res.stderr
    html = (tmp_path / "gouache.html").read_text()
    missing = [n for n in gouache.__all__ if n != "__version__" and f'id="{n}"' not in html]
    assert not missing, f"not in the API reference: {missing}"
    assert (tmp_path / "gouache" / "testing.html").is_file()


def test_troubleshooting_page_covers_topics():
    text = (ROOT / "docs" / "troubleshooting.md").read_text().lower()
    for topic in ("memory", "speed", "model files", "cache"):
        assert topic in text
