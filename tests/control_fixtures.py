"""ControlNet test models, once per session: the tiny SD ControlNet and its control image (shared by
tests/test_controlnet*.py), and a tiny random Depth Anything model for --control-preprocess depth; and the
plain diffusers pipeline those tests compare pixels with.

A plugin module registered in tests/conftest.py, like tests/model_fixtures.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def script_pipe(cls: str, folder: Path, controlnet_cls: str, controlnet: Path):
    """The plain diffusers script's pipeline: `cls` from `folder` with the ControlNet from `controlnet`."""
    import diffusers

    pipe = getattr(diffusers, cls).from_pretrained(
        folder, controlnet=getattr(diffusers, controlnet_cls).from_pretrained(controlnet)
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def tiny_controlnet(tiny_sd: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random ControlNet made from the tiny UNet; its zero convolutions are randomised too, or every
    ControlNet output would be zero and the image the same as without it."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_sd / "unet")
    # The tiny VAE downsamples by 2: so must the conditioning embedding.
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in controlnet.named_parameters():
            if "zero_conv" in name or "controlnet_down_blocks" in name or "controlnet_mid_block" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
            # Its name is controlnet_cond_embedding.conv_out: matching "conditioning_embedding" left it at
            # zero, and then the control image's content never reached the UNet.
            if "cond_embedding.conv_out" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    folder = tmp_path_factory.mktemp("controlnets") / "tiny-control"
    controlnet.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_xl_controlnet(tiny_sdxl: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ControlNetModel made from the tiny SDXL UNet (text_time embeddings, its cross_attention_dim)."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_sdxl / "unet")
    folder = tmp_path_factory.mktemp("controlnets") / "tiny-xl-control"
    ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def control_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("control-images") / "edges.png"
    Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_depth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random DepthAnythingForDepthEstimation (a 2-layer, 16-wide DINOv2 backbone) and the DPT image
    processor Depth Anything ships, at 28 px (two 14 px patches) instead of 518."""
    import torch
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    torch.manual_seed(0)
    backbone = Dinov2Config(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=28,
        patch_size=14,
        out_indices=[1, 2],
        reshape_hidden_states=False,
        apply_layernorm=True,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=16,
        neck_hidden_sizes=[8, 16],
        fusion_hidden_size=8,
        head_hidden_size=8,
        patch_size=14,
        reassemble_factors=[2, 1],
    )
    processor = DPTImageProcessor(
        size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14, do_pad=False
    )
    folder = tmp_path_factory.mktemp("depth-models") / "tiny-Depth-Anything-V2"
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
