"""The deployment guide shows the configuration the cluster benchmark runs with."""

from __future__ import annotations

import re

import pytest

from bench.cluster_config import examples
from tests.processes import ROOT

GUIDE = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(examples()))
def test_the_guide_shows_each_config_file_as_the_benchmark_writes_it(name: str) -> None:
    assert f"`{name}`:\n\n```" in GUIDE
    assert examples()[name] in GUIDE, f"docs/deployment.md: {name} differs from bench/"


def test_every_setting_the_guide_names_is_one_env_example_lists() -> None:
    env_example = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^# ?([A-Z][A-Z0-9_]+)=", env_example, re.MULTILINE))
    named = set(re.findall(r"`((?:POPMAP|AWS_COGNITO)_[A-Z0-9_]+)`", GUIDE))

    assert "POPMAP_DB_POOLER" in named  # the pattern finds the guide's settings
    assert named - listed == set()
