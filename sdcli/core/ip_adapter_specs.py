"""`--ip-adapter MODEL[:SCALE]`, `--ip-image IMAGE` and `--ip-image-encoder PATH`, parsed and checked before
any model loads. Pure string and file-existence work: no torch, no diffusers, no image decoding."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sdcli.core.specs import is_number, refuse_pickle
from sdcli.errors import UsageError

USAGE = (
    "--ip-adapter MODEL[:SCALE] --ip-image IMAGE, e.g. "
    "--ip-adapter h94/IP-Adapter/models/ip-adapter_sd15.safetensors:0.6 --ip-image face.png"
)
WEIGHT_SUFFIXES = (".safetensors", ".bin")
# A1111's ControlNet extension (which runs IP-Adapters there) offers weights from 0 to 2; past that the
# image overrides the prompt entirely, and a typo (60 for 0.6) would be silently honoured.
SCALE_RANGE = (0.0, 2.0)
ENCODER_FOLDER = "image_encoder"
ENCODER_FILES = ("config.json", "model.safetensors")  # what CLIPVisionModelWithProjection reads
ENCODER_HINT = "name its image encoder folder with --ip-image-encoder PATH"


@dataclass(frozen=True)
class IPAdapterSpec:
    source: str  # a local weights file, or a Hub `owner/repo/path/file.safetensors`
    image: Path  # the reference image
    scale: float = 1.0

    @classmethod
    def parse(cls, text: str, image: Path) -> IPAdapterSpec:
        """SCALE is the field after the last `:` when it reads as a number; a path holding a `:` whose
        tail is not a number stays whole."""
        source, sep, tail = text.rpartition(":")
        if sep and source and is_number(tail):
            return cls(source, image.expanduser(), float(tail))
        return cls(text, image.expanduser())

    def validated(self, allow_pickle: bool = False) -> IPAdapterSpec:
        what = f"--ip-adapter {self.source}"
        low, high = SCALE_RANGE
        if not math.isfinite(self.scale) or not low <= self.scale <= high:
            raise UsageError(f"{what}: the scale must be between {low:g} and {high:g}, got {self.scale:g}")
        if not self.source.strip():
            raise UsageError("--ip-adapter is empty", hint=USAGE)
        refuse_pickle(self.source, allow_pickle, "--ip-adapter")
        path = Path(self.source).expanduser()
        if path.is_dir():
            raise UsageError(
                f"{what}: a folder; name its weights file",
                hint=f"e.g. {self.source}/ip-adapter_sd15.safetensors",
            )
        if not path.is_file():
            if is_local(self.source):
                raise UsageError(f"{what}: no such file")
            if len(self.source.split("/")) < 3:
                raise UsageError(f"{what}: expected a weights file or owner/repo/path/file", hint=USAGE)
        if not self.source.lower().endswith(WEIGHT_SUFFIXES):
            raise UsageError(f"{what}: expected a .safetensors or .bin weights file", hint=USAGE)
        if not self.image.exists():
            raise UsageError(f"--ip-image {self.image}: no such file")
        if not self.image.is_file():
            raise UsageError(f"--ip-image {self.image}: not a file")
        return self


def is_encoder(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ENCODER_FILES)


def encoder_candidates(weights: PurePosixPath) -> list[str]:
    """Where diffusers and h94's layout put the encoder: beside the weights (`models/image_encoder` for
    `models/ip-adapter_sd15.safetensors`), else in the parent folder."""
    beside = weights.parent / ENCODER_FOLDER
    above = weights.parent.parent / ENCODER_FOLDER
    return list(dict.fromkeys(p.as_posix().removeprefix("./") for p in (beside, above)))


def local_encoder(weights: Path) -> Path:
    """The encoder folder of a local weights file, found as `encoder_candidates` says."""
    for candidate in encoder_candidates(PurePosixPath(weights.as_posix())):
        if is_encoder(Path(candidate)):
            return Path(candidate)
    raise UsageError(
        f"--ip-adapter {weights}: no {ENCODER_FOLDER} folder beside it or in its parent folder",
        hint=ENCODER_HINT,
    )


def is_local(source: str) -> bool:
    """Written as a path (not a Hub `owner/repo/...`): it must then exist here."""
    return source.startswith((".", "/", "~")) or "\\" in source or len(source.split("/")) < 3


def parse_all(
    adapters: tuple[str, ...],
    images: tuple[str, ...],
    encoder: str | None = None,
    allow_pickle: bool = False,
) -> tuple[IPAdapterSpec, ...]:
    """One --ip-image per --ip-adapter, in order; --ip-image-encoder only with an adapter."""
    if images and not adapters:
        raise UsageError("--ip-image needs --ip-adapter MODEL[:SCALE]", hint=USAGE)
    if encoder is not None and not adapters:
        raise UsageError("--ip-image-encoder needs --ip-adapter MODEL[:SCALE]", hint=USAGE)
    if adapters and not images:
        raise UsageError("--ip-adapter needs its reference image: --ip-image IMAGE", hint=USAGE)
    if len(adapters) != len(images):
        raise UsageError(
            f"{len(adapters)} --ip-adapter but {len(images)} --ip-image: give one image per adapter",
            hint=USAGE,
        )
    if encoder is not None:
        if not encoder.strip():
            raise UsageError("--ip-image-encoder is empty")
        local = encoder.startswith((".", "/", "~")) or len(encoder.split("/")) < 2
        if local and not Path(encoder).expanduser().is_dir():
            raise UsageError(f"--ip-image-encoder {encoder}: no such folder")
    specs = tuple(
        IPAdapterSpec.parse(text, Path(image)).validated(allow_pickle)
        for text, image in zip(adapters, images, strict=True)
    )
    if encoder is None:  # a local adapter's encoder is there before the model loads
        for spec in specs:
            if Path(spec.source).expanduser().is_file():
                local_encoder(Path(spec.source).expanduser())
    return specs
