"""Output PNGs are created like any other new file: mode 0666 less the umask (issue #22)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from PIL import Image

from sdcli.images import outputs


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
@pytest.mark.parametrize("overwrite", [False, True])
def test_png_mode_follows_the_umask(tmp_path: Path, umask: int, mode: int, overwrite: bool) -> None:
    old = os.umask(umask)
    try:
        path = outputs.write_png(Image.new("RGB", (8, 8)), tmp_path / "x.png", overwrite=overwrite)
        assert os.umask(umask) == umask  # writing left the process's umask as it was
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # still through a temporary file, gone now
