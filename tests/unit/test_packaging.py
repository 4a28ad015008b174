"""What a non-editable install gets: the library, its Lua scripts and results schema; not the
pytest-benchmark files (they run from a checkout)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_the_library_and_its_data_but_no_benchmark_tests(tmp_path):
    had_build = (ROOT / "build").exists()
    try:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                        str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    finally:
        if not had_build:  # setuptools builds in the checkout: leave it as it was
            shutil.rmtree(ROOT / "build", ignore_errors=True)
    (wheel,) = tmp_path.glob("brokerbench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("brokers/registry.py", "brokers/bullmq_redis/lua/moveToFinished.lua",
                     "brokers/bullmq_redis/lua/include/queue.lua", "benchmarks/harness/runner.py",
                     "benchmarks/results/results_schema.json", "benchmarks/commands/cli.py"):
        assert expected in names
    assert not [n for n in names if n.startswith("benchmarks/bench/") or "/test_" in n or n.startswith("tests/")]


def test_the_jupyter_extra_brings_a_front_end_and_stays_out_of_all():
    """`pip install -e ".[all,jupyter]"` for a class; CI installs `.[all]` and needs no front end."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("jupyterlab") for req in extras["jupyter"])
    assert "brokerbench[notebooks]" in extras["jupyter"]
    (everything,) = extras["all"]
    assert "jupyter" not in everything.split("[")[1].rstrip("]").split(",")
    assert not any("jupyterlab" in req for name, reqs in extras.items() if name != "jupyter" for req in reqs)
    assert '.[all,jupyter]' in (ROOT / "README.md").read_text()
