"""`pip install .` carries the library, its catalogue of Scaleway types, and nothing else."""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import scw_platform

ROOT = Path(__file__).resolve().parents[2]


def _wheel(tmp_path: Path) -> Path:
    # Built from a copy, so the checkout gets no build/ or egg-info of its own.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    library = source / "scw_platform"
    shutil.copytree(ROOT / "scw_platform", library, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, source],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    return wheel


def test_the_wheel_holds_the_library_and_its_data_only(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(metadata_name).decode())
    modules = {f"scw_platform/{p.name}" for p in (ROOT / "scw_platform").glob("*.py")}
    assert modules <= names, sorted(modules - names)
    assert "scw_platform/data/scaleway.yaml" in names
    assert not {n for n in names if n.split("/")[0] in {"program", "offline", "policy", "ops", "tests"}}
    assert metadata["Name"] == "scw-platform"
    assert metadata["Version"] == scw_platform.__version__


def test_the_installed_library_finds_its_catalogue_outside_the_checkout(tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(_wheel(tmp_path)) as archive:
        archive.extractall(site)
    probe = (
        "import scw_platform.catalogue as c, scw_platform.settings as s; "
        "print(c.DEFAULT_PATH); print(len(c.load().kapsule_node_types))"
    )
    # Only the extracted wheel and the installed dependencies: not the checkout.
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {probe}"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    path, count = result.stdout.split()
    assert Path(path).is_relative_to(site), path
    assert int(count) > 0
