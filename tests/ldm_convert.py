"""Diffusers pipeline weights -> one original (LDM / A1111 "checkpoint") state dict, for tests.

The inverse of the key renames in diffusers' `loaders/single_file_utils.py` (`convert_ldm_unet_checkpoint`,
`convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`), written for any block layout so it works on the
tiny test UNets, not only on SD's four levels. Only renames and the VAE's 1x1-conv attention shapes: the
tensors themselves are the pipeline's, so a checkpoint made here must give the pipeline's pixels back.
"""

from __future__ import annotations

from typing import Any

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_CLIP_PREFIX = "cond_stage_model.transformer.text_model."

_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_VAE_ATTENTION = (
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
)


def _unet_prefixes(config: dict[str, Any]) -> dict[str, str]:
    """diffusers module prefix -> LDM module prefix for a UNet2DConditionModel config."""
    per_level = config["layers_per_block"]
    levels = len(config["block_out_channels"])
    prefixes = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
        "mid_block.resnets.0": "middle_block.0",
        "mid_block.attentions.0": "middle_block.1",
        "mid_block.resnets.1": "middle_block.2",
    }
    for level in range(levels):
        for layer in range(per_level):
            block = 1 + level * (per_level + 1) + layer
            prefixes[f"down_blocks.{level}.resnets.{layer}"] = f"input_blocks.{block}.0"
            prefixes[f"down_blocks.{level}.attentions.{layer}"] = f"input_blocks.{block}.1"
        if level < levels - 1:
            block = 1 + level * (per_level + 1) + per_level
            prefixes[f"down_blocks.{level}.downsamplers.0.conv"] = f"input_blocks.{block}.0.op"
        for layer in range(per_level + 1):
            block = level * (per_level + 1) + layer
            prefixes[f"up_blocks.{level}.resnets.{layer}"] = f"output_blocks.{block}.0"
            prefixes[f"up_blocks.{level}.attentions.{layer}"] = f"output_blocks.{block}.1"
        if level < levels - 1:
            block = level * (per_level + 1) + per_level
            # LDM puts the upsampler after the attention in a block that has one.
            slot = 2 if "CrossAttn" in config["up_block_types"][level] else 1
            prefixes[f"up_blocks.{level}.upsamplers.0.conv"] = f"output_blocks.{block}.{slot}.conv"
    return prefixes


def _rename(key: str, prefixes: dict[str, str]) -> str:
    for new, old in sorted(prefixes.items(), key=lambda item: -len(item[0])):
        if key.startswith(new + "."):
            rest = key[len(new) + 1 :]
            if ".resnets." in new + "." or new.startswith("mid_block.resnets"):
                for diffusers_name, ldm_name in _RESNET:
                    if rest.startswith(diffusers_name + "."):
                        rest = ldm_name + rest[len(diffusers_name) :]
            return f"{old}.{rest}"
    raise KeyError(f"no LDM name for UNet key {key}")


def unet_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    prefixes = _unet_prefixes(config)
    return {UNET_PREFIX + _rename(key, prefixes): value for key, value in state.items()}


def _vae_key(key: str, levels: int) -> str:
    renames = [("conv_norm_out", "norm_out"), ("conv_shortcut", "nin_shortcut")]
    for part in ("encoder", "decoder"):
        renames += [(f"{part}.mid_block.resnets.{i}.", f"{part}.mid.block_{i + 1}.") for i in range(2)]
        renames.append((f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1."))
    for level in range(levels):
        renames.append((f"encoder.down_blocks.{level}.resnets.", f"encoder.down.{level}.block."))
        renames.append((f"encoder.down_blocks.{level}.downsamplers.0.", f"encoder.down.{level}.downsample."))
        # The decoder's blocks are numbered from the bottom in LDM, from the top in diffusers.
        ldm_level = levels - 1 - level
        renames.append((f"decoder.up_blocks.{level}.resnets.", f"decoder.up.{ldm_level}.block."))
        renames.append((f"decoder.up_blocks.{level}.upsamplers.0.", f"decoder.up.{ldm_level}.upsample."))
    for old, new in renames:
        key = key.replace(old, new)
    if ".mid.attn_1." in key:
        for diffusers_name, ldm_name in _VAE_ATTENTION:
            key = key.replace(f".attn_1.{diffusers_name}.", f".attn_1.{ldm_name}.")
    return key


def vae_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    levels = len(config["block_out_channels"])
    out = {}
    for key, value in state.items():
        ldm = _vae_key(key, levels)
        if ".mid.attn_1." in ldm and value.ndim == 2:
            value = value[:, :, None, None]  # LDM's attention projections are 1x1 convolutions
        out[VAE_PREFIX + ldm] = value
    return out


def clip_to_ldm(state: dict[str, Any], prefix: str = SD1_CLIP_PREFIX) -> dict[str, Any]:
    # transformers 5 saves CLIPTextModel without the `text_model.` level that LDM checkpoints keep.
    return {prefix + key.removeprefix("text_model."): value for key, value in state.items()}


_OPENCLIP_RENAMES = (
    ("self_attn.", "attn."),
    ("layer_norm1", "ln_1"),
    ("layer_norm2", "ln_2"),
    ("mlp.fc1", "mlp.c_fc"),
    ("mlp.fc2", "mlp.c_proj"),
)
_OPENCLIP_TOP = {
    "embeddings.position_embedding.weight": "positional_embedding",
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}


def openclip_to_ldm(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A CLIP text model in OpenCLIP's layout (SD 2.x, SDXL's second encoder): q, k and v fused into one
    `in_proj`, the projection stored transposed."""
    import torch

    out: dict[str, Any] = {}
    qkv: dict[tuple[str, str], dict[str, Any]] = {}
    for key, value in state.items():
        key = key.removeprefix("text_model.")
        if key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T
        elif key in _OPENCLIP_TOP:
            out[prefix + _OPENCLIP_TOP[key]] = value
        else:
            layer, rest = key.removeprefix("encoder.layers.").split(".", 1)
            name, kind = rest.rsplit(".", 1)  # "self_attn.q_proj", "weight"
            if name.endswith(("q_proj", "k_proj", "v_proj")):
                qkv.setdefault((layer, kind), {})[name[-6]] = value
                continue
            for old, new in _OPENCLIP_RENAMES:
                rest = rest.replace(old, new)
            out[f"{prefix}transformer.resblocks.{layer}.{rest}"] = value
    for (layer, kind), parts in qkv.items():
        fused = torch.cat([parts["q"], parts["k"], parts["v"]])
        out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{kind}"] = fused
    return out


def checkpoint(pipe: Any, family: str = "sd1") -> dict[str, Any]:
    """The single-file state dict A1111 would load for a diffusers pipeline, with the text encoder(s) stored
    as `family` ("sd1", "sd2" or "sdxl") stores them."""
    state: dict[str, Any] = {}
    state.update(unet_to_ldm(pipe.unet.state_dict(), dict(pipe.unet.config)))
    state.update(vae_to_ldm(pipe.vae.state_dict(), dict(pipe.vae.config)))
    if family == "sd1":
        state.update(clip_to_ldm(pipe.text_encoder.state_dict()))
    elif family == "sd2":
        state.update(openclip_to_ldm(pipe.text_encoder.state_dict(), "cond_stage_model.model."))
    else:
        encoder = pipe.text_encoder.state_dict()
        state.update(clip_to_ldm(encoder, "conditioner.embedders.0.transformer.text_model."))
        state.update(openclip_to_ldm(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    return {key: value.detach().clone().contiguous() for key, value in state.items()}
