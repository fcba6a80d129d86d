"""What every image command does around its own work: load the model once under a progress display, then
report each written image (a path, or a JSON line, on stdout) and a summary on stderr.

Not a command itself (hence the underscore); generate, img2img and inpaint share it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sdcli.console import Output, Progress

if TYPE_CHECKING:
    from sdcli.jobs import Written
    from sdcli.pipelines import LoadedModel
    from sdcli.requests import ModelRequest


class ImageRun:
    """The loaded model, and the progress bars and stdout of one run."""

    def __init__(self, out: Output, progress: Progress, model: LoadedModel, total: int, steps: int) -> None:
        self.out = out
        self.model = model
        self.written = 0
        self._progress = progress
        self._images = progress.task("images", total=total)
        self._steps = progress.task("denoising", total=steps)

    def on_step(self, done: int, total: int) -> None:
        self._progress.update(self._steps, completed=done, total=total)

    def report(self, written: Written, **extra: Any) -> None:
        """`extra` goes into the JSON line only (img2img adds the input's path there)."""
        self.written += 1
        self._progress.update(self._images, advance=1)
        if self.out.json:
            self.out.data({**written.as_json(), **extra})
        else:
            self.out.result(str(written.path))


@contextmanager
def image_run(out: Output, model_request: ModelRequest, *, total: int, steps: int) -> Iterator[ImageRun]:
    from sdcli import pipelines

    began = time.perf_counter()
    with out.progress() as progress:
        loading = progress.task(f"loading {model_request.model}")
        model = pipelines.load_model(model_request)
        progress.done(loading)
        run = ImageRun(out, progress, model, total, steps)
        yield run
    out.info(f"{run.written} image(s) in {time.perf_counter() - began:.1f}s")
