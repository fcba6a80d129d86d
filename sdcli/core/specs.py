"""What the user names on the command line before anything is loaded: LoRA and embedding specs, and the
rules for weights files (which names are checkpoints, which are pickles that can run code when loaded).

Pure string work: it runs before torch or diffusers are imported.
"""

from __future__ import annotations

from dataclasses import dataclass

from sdcli.errors import UsageError

SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin", ".pth")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".bin", ".pth")
PICKLE_HINT = (
    "convert it to .safetensors, or pass --allow-pickle to read it anyway (tensors only: "
    "torch.load(weights_only=True) refuses any other object)"
)


def is_pickle(name: str) -> bool:
    return name.lower().endswith(PICKLE_SUFFIXES)


def is_checkpoint_name(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def refuse_pickle(name: str, allow: bool, what: str) -> None:
    """Exit 2 before anything is read when a pickled weights file is given without --allow-pickle."""
    if is_pickle(name) and not allow:
        raise UsageError(f"{what} {name} is a pickle, which can run code when loaded", hint=PICKLE_HINT)


def is_number(text: str) -> bool:
    """Whether a `:` field reads as a number (a scale), which tells it from the end of a path or name."""
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class LoraSpec:
    source: str  # a local file, a Hub `owner/repo` or `owner/repo/file.safetensors`
    scale: float = 1.0

    @classmethod
    def parse(cls, text: str) -> LoraSpec:
        """`PATH:SCALE`: the scale is the text after the last `:` when it reads as a number, so `C:` or a
        `repo:branch` are never mistaken for one."""
        head, sep, tail = text.rpartition(":")
        if sep and head:
            try:
                return cls(head, float(tail))
            except ValueError:
                pass
        return cls(text)


@dataclass(frozen=True)
class EmbeddingSpec:
    source: str
    token: str | None = None  # None: the file name without its extension, as in A1111

    @classmethod
    def parse(cls, text: str) -> EmbeddingSpec:
        """`PATH:TOKEN`: a token is one word after the last `:`; a path (`C:\\x`, `a:b/c`) is no token."""
        head, sep, tail = text.rpartition(":")
        if sep and head and tail and not any(c in tail for c in "/\\ "):
            return cls(head, tail)
        return cls(text)


def validated(loras: tuple[LoraSpec, ...], embeddings: tuple[EmbeddingSpec, ...], allow_pickle: bool) -> None:
    for lora in loras:
        if not lora.source.strip():
            raise UsageError("--lora is empty")
        if lora.scale != lora.scale or abs(lora.scale) == float("inf"):
            raise UsageError(f"--lora {lora.source}: the scale must be a finite number")
        refuse_pickle(lora.source, allow_pickle, "--lora")
    for embedding in embeddings:
        if not embedding.source.strip():
            raise UsageError("--embedding is empty")
        refuse_pickle(embedding.source, allow_pickle, "--embedding")
