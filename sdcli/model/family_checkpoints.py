"""Single files of the transformer families (FLUX.1, SD3): a transformer alone, or a whole pipeline.

What people download for FLUX.1 is mostly the transformer alone (`flux1-dev-Q4_K_S.gguf`, a fine-tune's
`.safetensors`): the text encoders and the VAE come from elsewhere. So such a file is loaded as the
`transformer` of the `--config` pipeline folder (or the family's reference repo in the Hub cache), whose other
weights must be there; a whole-pipeline file (transformer, VAE and text encoders in one, as ComfyUI saves
them) needs only the folder's configs, as SD checkpoints do. GGUF files need the `gguf` package and load
through diffusers' GGUFQuantizationConfig. SD 1.x/2.x/SDXL files keep going through `sdcli.model.checkpoints`.
Only the standard library at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdcli.errors import ModelUnavailable, UsageError, first_line
from sdcli.model import checkpoints

REFERENCES = {
    "flux": checkpoints.Family("FLUX.1", "black-forest-labs/FLUX.1-dev"),
    "sd3": checkpoints.Family("SD3", "stabilityai/stable-diffusion-3.5-large"),
}
PREFIX = "model.diffusion_model."  # ComfyUI's and the original repos' prefix of the denoiser's weights
# Block names of the original (BFL, Stability) layouts and of diffusers' own.
FLUX_MARKERS = ("double_blocks.", "single_blocks.", "single_transformer_blocks.")
SD3_MARKERS = ("joint_blocks.", "context_embedder.")
# A file with any of these holds more than the denoiser: a whole pipeline.
WHOLE_PREFIXES = ("vae.", "first_stage_model.", "text_encoders.", "cond_stage_model.", "conditioner.")
GGUF_HINT = "pip install 'sdcli[gguf]'  (or: pip install gguf)"


def claims(model: str) -> bool:
    """A local `.gguf` file, or a local `.safetensors` file whose denoiser is a FLUX.1/SD3 transformer."""
    path = Path(model).expanduser()
    if not path.is_file():
        return False
    if path.name.lower().endswith(".gguf"):
        return True
    if not path.name.lower().endswith(".safetensors"):
        return False
    try:
        names = list(checkpoints.safetensors_shapes(path))
    except UsageError:
        return False  # let sdcli.model.checkpoints report the damaged file as it always did
    return _family(names) is not None


def tensor_names(path: Path) -> list[str]:
    if not path.name.lower().endswith(".gguf"):
        return list(checkpoints.safetensors_shapes(path))
    from sdcli.model import quantization

    if not quantization.installed("gguf"):
        raise UsageError(f"{path.name} is a GGUF file, which needs the gguf package", hint=GGUF_HINT)
    from gguf import GGUFReader

    try:
        return [str(tensor.name) for tensor in GGUFReader(str(path)).tensors]
    except (OSError, ValueError, IndexError) as exc:  # a cut-short file fails as IndexError or ValueError
        raise UsageError(f"{path.name} is not a readable GGUF file ({first_line(exc)})") from exc


def _family(names: list[str]) -> str | None:
    stripped = [n.removeprefix(PREFIX) for n in names]
    if any(n.startswith(PREFIX + "input_blocks.") for n in names):
        return None  # an SD UNet
    if any(n.startswith(FLUX_MARKERS) for n in stripped):
        return "flux"
    if any(n.startswith(SD3_MARKERS) for n in stripped):
        return "sd3"
    return None


def locate(model: str, *, config: str | None) -> Any:
    """The ModelSource of a FLUX.1/SD3 single file: the file, the pipeline folder around it, its hash."""
    from sdcli.model import hashes
    from sdcli.model.families import of_class
    from sdcli.model.sources import ModelSource, read_model_index

    path = Path(model).expanduser()
    names = tensor_names(path)
    family = _family(names)
    if family is None:
        raise UsageError(
            f"{path.name} holds no FLUX.1 or SD3 transformer weights",
            hint="--model takes a FLUX.1/SD3 transformer or checkpoint file, or an SD checkpoint",
        )
    whole = any(n.startswith(WHOLE_PREFIXES) for n in names)
    reference = REFERENCES[family]
    folder, config_name = checkpoints.find_config(reference, config, path.name)
    index = read_model_index(folder)
    config_family = of_class(str(index.get("_class_name", ""))).name.removesuffix("-schnell")
    if config_family != family:
        raise UsageError(
            f"{path.name} is a {reference.label} transformer but --config {config_name} describes a "
            f"{index.get('_class_name', 'different')} model",
            hint=f"use a config of the same family, e.g. {reference.reference}",
        )
    if not whole:
        _check_other_weights(folder, index, path.name, config_name, reference.reference)
    return ModelSource(
        name=path.stem,
        folder=folder,
        model_hash=hashes.model_hash(path),
        checkpoint=path,
        config=config_name,
        component=None if whole else "transformer",
    )


def _check_other_weights(folder: Path, index: dict[str, Any], name: str, config_name: str, repo: str) -> None:
    """A transformer alone needs the text encoders and VAE from the folder: say so before diffusers fails."""
    from sdcli.hub.selection import pipeline_components

    missing = [
        component
        for component in pipeline_components(index)
        if component.startswith(("text_encoder", "vae"))
        and not any((folder / component).glob("*.safetensors"))
    ]
    if missing:
        raise ModelUnavailable(
            f"{name} is a transformer only; the rest of the pipeline comes from {config_name}, which has no "
            f"weights for {', '.join(missing)}",
            hint=f"run `sdcli download {repo} --exclude 'transformer/*'`, or pass --config with a full "
            "diffusers folder of the same model",
        )


def load(cls: Any, source: Any, dtype: Any, **kwargs: Any) -> Any:
    """The file as the transformer of the config folder's pipeline, offline."""
    import diffusers
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    index = source.model_index
    transformer_cls = getattr(diffusers, str(index["transformer"][1]))
    extra: dict[str, Any] = {}
    if source.checkpoint.name.lower().endswith(".gguf"):
        extra["quantization_config"] = diffusers.GGUFQuantizationConfig(compute_dtype=dtype)
    try:
        transformer = transformer_cls.from_single_file(
            str(source.checkpoint),
            config=str(source.folder),
            subfolder="transformer",
            local_files_only=True,
            torch_dtype=dtype,
            **extra,
        )
        return cls.from_pretrained(
            source.folder, transformer=transformer, dtype=dtype, use_safetensors=True, **kwargs
        )
    except (OSError, ValueError, KeyError, RuntimeError, SingleFileComponentError) as exc:
        if "out of memory" in str(exc).lower():
            raise
        raise ModelUnavailable(
            f"cannot load {source.checkpoint.name} as the transformer of {source.config}: {first_line(exc)}",
            hint="the configuration must come from a model of the same family and size (--config)",
        ) from exc
