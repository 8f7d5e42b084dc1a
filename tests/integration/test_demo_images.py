"""The demo site's update images: real signed bundles in the demo home's library, trusted, with a health check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.peers import require_tool

from siteline.core.images.library import ImageLibrary
from siteline.core.images.trusted_keys import TrustedKeys
from siteline.simulator.demo_images import install_demo_images


def test_images_land_in_the_library_trusted_and_a_second_start_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("rauc")
    require_tool("mksquashfs")
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path / "home"))
    config = tmp_path / "home" / "config"
    config.mkdir(parents=True)
    said = install_demo_images(tmp_path / "images", config)
    assert said.startswith("update images in the library"), said
    entries = ImageLibrary().entries()
    assert sorted(e.info["version"] for e in entries) == ["2024.09.0", "2024.09.1-unhealthy", "2024.09.2-noboot"]
    keys = TrustedKeys()
    for entry in entries:
        assert entry.sig is not None
        assert keys.verify_trusted(entry.image, entry.sig).ok
    health = json.loads((config / "health-checks.json").read_text())
    assert health["families"][0]["units"] == ["edge-agent.service"]
    again = install_demo_images(tmp_path / "images", config)  # `siteline demo --dir` started again
    assert again.startswith("update images in the library"), again
    assert len(ImageLibrary().entries()) == 3  # the same images, signed by the same key
