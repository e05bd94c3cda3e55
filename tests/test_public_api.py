import subprocess
import sys

import gouache


def test_all_is_sorted_and_exact():
    assert gouache.__all__ == sorted(gouache.__all__)
    public = {n for n in dir(gouache) if not n.startswith("_")} | {"__version__"}
    public -= {"cli", "testing", "enhance", "server", "batch"}  # submodules, not names of the API
    assert set(gouache.__all__) == public


def test_every_public_name_documented():
    for name in gouache.__all__:
        obj = getattr(gouache, name)
        if callable(obj):
            assert obj.__doc__, name


def test_python_m_gouache_version():
    out = subprocess.run([sys.executable, "-m", "gouache", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"gouache {gouache.__version__}"


def test_gouache_info_runs():
    out = subprocess.run([sys.executable, "-m", "gouache", "info"], capture_output=True, text=True, check=True)
    assert "libstable-diffusion" in out.stdout and "physical_cores" in out.stdout
