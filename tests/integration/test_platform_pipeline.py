"""The platform repository's own pipeline (.gitlab-ci.yml) builds its images with the template
every application uses: valid GitLab CI, one child pipeline per image, each Dockerfile there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / ".gitlab-ci.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def _document() -> dict:
    return yaml.safe_load(PIPELINE.read_text())


def test_the_pipeline_is_valid_gitlab_ci() -> None:
    if not CHECK_JSONSCHEMA.exists():
        if os.environ.get("CI"):
            pytest.fail(f"check-jsonschema not installed at {CHECK_JSONSCHEMA}")
        pytest.skip("check-jsonschema is not installed (pip install check-jsonschema==0.39.0)")
    result = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.gitlab-ci", str(PIPELINE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_platform_image_is_built_by_the_shared_template() -> None:
    document = _document()
    template = document[".image"]["trigger"]
    assert template["include"] == "ops/ci/gitlab/build-image.gitlab-ci.yml"
    assert (ROOT / template["include"]).is_file()
    assert template["strategy"] == "depend", "a failed scan must fail the platform's pipeline"
    jobs = {name: job for name, job in document.items() if isinstance(job, dict)}
    images = {name: job["variables"] for name, job in jobs.items() if job.get("extends") == ".image"}
    assert set(images) == {"platform-ops", "restore-check"}
    for variables in images.values():
        dockerfile, context = ROOT / variables["DOCKERFILE"], ROOT / variables["CONTEXT"]
        assert dockerfile.is_file() and context.is_dir(), variables
        # Every COPY source of the Dockerfile lies in its build context.
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY ") and "--from" not in line:
                source = line.split()[1]
                assert (context / source).exists(), f"{dockerfile}: {source} not in {context}"
