"""Tiny random-weight pipelines of the families sdcli has no special path for (Qwen-Image, FLUX.2 klein,
Chroma, Z-Image, ...), built in memory with no download, so the tests can prove the generic path runs each
as a plain diffusers script does.

The component configs follow diffusers' own `get_dummy_components` for each pipeline; the tokenizers those
tests fetch from the Hub are built here instead: a byte-level BPE with no merges stands in for Qwen's,
Gemma's, GLM-4's, Llama 3's and Mistral's (every prompt tokenizes, one token per byte, with each one's own
markers), and the unigram T5 one of `tiny_families` for T5's; ByT5's needs no vocabulary.
"""

from __future__ import annotations

from typing import Any

from sdcli.diagnostics.tiny import TinySpec
from sdcli.diagnostics.tiny_families import T5_WIDTH, _flow_vae, _kl_vae, _t5_encoder, _t5_tokenizer

NEW_FAMILIES = (
    "qwen-image",
    "flux2-klein",
    "chroma",
    "z-image",
    "sana",
    "lumina2",
    "aura-flow",
    "cogview4",
    "kandinsky3",
    "hunyuan-image",
    "flux2",
    "ovis-image",
)

# Qwen's chat markers, which the pipelines' prompt templates spell out and expect as single tokens.
_QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")
# The Qwen3 chat template cut to what the pipelines use: messages, a generation prompt, and the empty
# thinking block that `enable_thinking=False` adds.
_QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


def _byte_level_tokenizer(
    cls: Any,
    *,
    before: tuple[str, ...] = (),
    after: tuple[str, ...] = (),
    prefix: tuple[str, ...] = (),
    additional: tuple[str, ...] = (),
    chat_template: str | None = None,
    **tokens: Any,
) -> Any:
    """A `cls` tokenizer over a byte-level BPE with no merges: `before` takes the first ids, then the 256
    byte symbols, then `after`; `prefix` goes before every text and `additional` become special tokens.
    `tokens` (bos_token, unk_token, ...) go to `cls`, the unk one to the BPE too, as each model's own does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = {symbol: i for i, symbol in enumerate(before)}
    for symbol in [*sorted(pre_tokenizers.ByteLevel.alphabet()), *after]:
        vocab[symbol] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=tokens.get("unk_token")))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    if prefix:
        core.post_processor = processors.TemplateProcessing(
            single=" ".join([*prefix, "$A"]), special_tokens=[(symbol, vocab[symbol]) for symbol in prefix]
        )
    tokenizer = cls(tokenizer_object=core, **tokens)
    if additional:
        tokenizer.add_special_tokens({"additional_special_tokens": list(additional)})
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def qwen_tokenizer() -> Any:
    """A Qwen2 tokenizer (transformers 5's, the fast one) over the 256 byte-level symbols plus Qwen's chat
    markers (~260 ids)."""
    from transformers import Qwen2Tokenizer

    # The markers stay out of the BPE vocabulary: as added tokens they take the ids after the bytes.
    return _byte_level_tokenizer(
        Qwen2Tokenizer,
        additional=_QWEN_SPECIALS[1:],
        chat_template=_QWEN_CHAT_TEMPLATE,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=1024,
    )


_GEMMA_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>")


def gemma_tokenizer() -> Any:
    """A Gemma tokenizer over the 256 byte-level symbols plus Gemma's pad/eos/bos/unk (260 ids)."""
    from transformers import GemmaTokenizer

    return _byte_level_tokenizer(
        GemmaTokenizer,
        before=_GEMMA_SPECIALS,
        prefix=("<bos>",),
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
    )


def _gemma2(hidden: int, head_dim: int, intermediate: int, layers: int) -> Any:
    from transformers import Gemma2Config, Gemma2Model

    config = Gemma2Config(
        head_dim=head_dim,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_attention_heads=2,
        num_hidden_layers=layers,
        num_key_value_heads=2,
        vocab_size=len(_GEMMA_SPECIALS) + 256,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    return Gemma2Model(config)


def _sana(spec: TinySpec) -> Any:
    from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel

    transformer = SanaTransformer2DModel(
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_attention_heads=2,
        attention_head_dim=4,
        num_cross_attention_heads=2,
        cross_attention_head_dim=4,
        cross_attention_dim=8,
        caption_channels=8,
        # SanaPipeline renders at its aspect-ratio bins and resizes to the size asked for; sample_size 16
        # picks its 512 px bins (32 would pick 1024, 8x the work), 64x64 latents with this 8x VAE.
        sample_size=16,
    )
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=("ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        encoder_qkv_multiscales=((), (), (), (5,)),
        decoder_qkv_multiscales=((), (), (), (5,)),
        encoder_layers_per_block=(1, 1, 1, 1),
        decoder_layers_per_block=[1, 1, 1, 1],
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )
    return SanaPipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder=_gemma2(8, 16, 64, 1),
        tokenizer=gemma_tokenizer(),
    )


def _lumina2(spec: TinySpec) -> Any:
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        Lumina2Pipeline,
        Lumina2Transformer2DModel,
    )

    transformer = Lumina2Transformer2DModel(
        sample_size=4,
        patch_size=2,
        in_channels=4,
        hidden_size=8,
        num_layers=2,
        num_attention_heads=1,
        num_kv_heads=1,
        multiple_of=16,
        ffn_dim_multiplier=None,
        norm_eps=1e-5,
        scaling_factor=1.0,
        axes_dim_rope=[4, 2, 2],
        cap_feat_dim=8,
    )
    # Lumina2Pipeline assumes an 8x VAE (its vae_scale_factor is fixed): three downsamples, or 4x4 images.
    vae = _flow_vae(4, (4, 4, 4, 4), norm_num_groups=1, sample_size=32)
    return Lumina2Pipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=_gemma2(8, 4, 8, 2),
        tokenizer=gemma_tokenizer(),
    )


def _qwen_vocab_size() -> int:
    return 256 + len(_QWEN_SPECIALS)


def _qwen25_vl(width: int, mrope_section: list[int]) -> Any:
    """A two-layer Qwen2.5-VL of `width` over the tiny Qwen vocabulary."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    vocab = _qwen_vocab_size()
    # The vision tower is never run for text-to-image, but the config needs its token ids inside the vocab.
    config = Qwen2_5_VLConfig(
        text_config={
            "hidden_size": width,
            "intermediate_size": width,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"mrope_section": mrope_section, "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "vocab_size": vocab,
        },
        vision_config={
            "depth": 2,
            "hidden_size": width,
            "intermediate_size": width,
            "num_heads": 2,
            "out_hidden_size": width,
        },
        vision_start_token_id=vocab - 3,
        vision_end_token_id=vocab - 2,
        image_token_id=vocab - 1,
        video_token_id=vocab - 1,
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def _qwen_image(spec: TinySpec) -> Any:
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )

    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    vae = AutoencoderKLQwenImage(
        base_dim=24,
        z_dim=4,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    return QwenImagePipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=_qwen25_vl(16, [1, 1, 2]),
        tokenizer=qwen_tokenizer(),
    )


def _qwen3(layers: int, *, causal_lm: bool, hidden: int = 16, intermediate: int = 16, heads: int = 2) -> Any:
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    config = Qwen3Config(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=2,
        head_dim=8,
        vocab_size=_qwen_vocab_size(),
        max_position_embeddings=1024,
    )
    return Qwen3ForCausalLM(config) if causal_lm else Qwen3Model(config)


# One double-stream and one single-stream block of two 16-wide heads: the tiny layout the FLUX.1-style
# transformers here (Chroma, Ovis-Image, FLUX.2) share, as diffusers' dummy components for them do.
_FLUX_STACK = {
    "patch_size": 1,
    "in_channels": 4,
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
}


def _flux2_transformer(*, guidance_embeds: bool) -> Any:
    from diffusers import Flux2Transformer2DModel

    return Flux2Transformer2DModel(
        **_FLUX_STACK,
        joint_attention_dim=48,  # three stacked layers of 16
        timestep_guidance_channels=256,
        axes_dims_rope=[4, 4, 4, 4],
        guidance_embeds=guidance_embeds,
    )


def _flux2_vae() -> Any:
    from diffusers import AutoencoderKLFlux2

    return AutoencoderKLFlux2(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=1,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def _flux2_klein(spec: TinySpec) -> Any:
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
    )

    # Klein stacks the text encoder's hidden states 9, 18 and 27 by default: a 27-layer encoder lets a
    # plain `pipe(prompt)` run with that default, and at width 16 it is still tiny.
    transformer = _flux2_transformer(guidance_embeds=False)
    vae = _flux2_vae()
    return Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=_qwen3(27, causal_lm=True),
        tokenizer=qwen_tokenizer(),
        transformer=transformer,
        vae=vae,
    )


def _chroma(spec: TinySpec) -> Any:
    from diffusers import (
        ChromaPipeline,
        ChromaTransformer2DModel,
        FlowMatchEulerDiscreteScheduler,
    )

    transformer = ChromaTransformer2DModel(
        **_FLUX_STACK,
        joint_attention_dim=T5_WIDTH,
        axes_dims_rope=[4, 4, 8],
        approximator_hidden_dim=32,
        approximator_layers=1,
        approximator_num_channels=16,
    )
    vae = _flow_vae(1, (4,), norm_num_groups=1, sample_size=32)
    return ChromaPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=_t5_encoder(),
        tokenizer=_t5_tokenizer(),
        transformer=transformer,
        vae=vae,
    )


def _z_image(spec: TinySpec) -> Any:
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        ZImagePipeline,
        ZImageTransformer2DModel,
    )

    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        norm_eps=1e-5,
        qk_norm=True,
        cap_feat_dim=16,
        rope_theta=256.0,
        t_scale=1000.0,
        axes_dims=[8, 4, 4],
        # Room for 64 patches a side: `info --check` runs at 256 px, 128 latents with this 2x VAE.
        axes_lens=[256, 64, 64],
    )
    vae = _kl_vae((8, 16), 16, 8, 32, scaling_factor=0.3611, shift_factor=0.1159)
    return ZImagePipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=_qwen3(2, causal_lm=False),
        tokenizer=qwen_tokenizer(),
    )


def _aura_flow(spec: TinySpec) -> Any:
    from diffusers import AuraFlowPipeline, AuraFlowTransformer2DModel, FlowMatchEulerDiscreteScheduler

    transformer = AuraFlowTransformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=4,
        num_mmdit_layers=1,
        num_single_dit_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=T5_WIDTH,
        out_channels=4,
        # Room for `info --check`'s 256 px: 128 latents with this 2x VAE, 64 patches a side.
        pos_embed_max_size=4096,
    )
    return AuraFlowPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=_t5_encoder(umt5=True),
        tokenizer=_t5_tokenizer(),
        transformer=transformer,
        vae=_flow_vae(4),
    )


_GLM_SPECIALS = ("<|endoftext|>", "[gMASK]", "<sop>")


def glm_tokenizer() -> Any:
    """A GLM-4 tokenizer over the 256 byte-level symbols plus its pad and the "[gMASK]<sop>" prefix it puts
    before every text (259 ids): CogView4 encodes an empty negative, and with no prefix it would be no
    tokens at all."""
    from transformers import PreTrainedTokenizerFast

    return _byte_level_tokenizer(
        PreTrainedTokenizerFast,
        after=_GLM_SPECIALS,
        prefix=_GLM_SPECIALS[1:],
        additional=_GLM_SPECIALS[1:],
        pad_token="<|endoftext|>",
        eos_token="<|endoftext|>",
    )


def _glm(hidden: int, layers: int) -> Any:
    from transformers import GlmConfig, GlmModel

    config = GlmConfig(
        hidden_size=hidden,
        intermediate_size=8,
        num_hidden_layers=layers,
        num_attention_heads=4,
        head_dim=8,
        vocab_size=256 + len(_GLM_SPECIALS),
        pad_token_id=256,
        eos_token_id=256,
    )
    return GlmModel(config)


def _cogview4(spec: TinySpec) -> Any:
    from diffusers import (
        CogView4Pipeline,
        CogView4Transformer2DModel,
        FlowMatchEulerDiscreteScheduler,
    )

    transformer = CogView4Transformer2DModel(
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=4,
        num_attention_heads=4,
        out_channels=4,
        text_embed_dim=32,
        time_embed_dim=8,
        condition_dim=4,
    )
    vae = _kl_vae((8, 16), 4, 8, 128)
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_shift=0.25,
        max_shift=0.75,
        base_image_seq_len=256,
        use_dynamic_shifting=True,
        time_shift_type="linear",
    )
    return CogView4Pipeline(
        transformer=transformer,
        vae=vae,
        scheduler=scheduler,
        text_encoder=_glm(32, 2),
        tokenizer=glm_tokenizer(),
    )


def _kandinsky3(spec: TinySpec) -> Any:
    from diffusers import DDPMScheduler, Kandinsky3Pipeline, Kandinsky3UNet, VQModel

    unet = Kandinsky3UNet(
        in_channels=4,
        time_embedding_dim=4,
        groups=2,
        attention_head_dim=4,
        # One layer a block breaks its conditional norms' widths; (32, 64) is diffusers' test layout, 40x
        # slower.
        layers_per_block=2,
        block_out_channels=(16, 32),
        cross_attention_dim=4,
        encoder_hid_dim=T5_WIDTH,
    )
    # Kandinsky3Pipeline sizes its latents for an 8x MoVQ, rounded up to 64 px, so the tiny one is 8x as
    # the real one is (the tests run it at 64 px). Its spatial norms group by 32, whatever norm_num_groups
    # says.
    movq = VQModel(
        block_out_channels=[32, 32, 32, 32],
        down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
        in_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        norm_type="spatial",
        num_vq_embeddings=12,
        out_channels=3,
        up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3,
        vq_embed_dim=4,
    )
    scheduler = DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=True,
        thresholding=False,
    )
    return Kandinsky3Pipeline(
        unet=unet, scheduler=scheduler, movq=movq, text_encoder=_t5_encoder(), tokenizer=_t5_tokenizer()
    )


_LLAMA_SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>")


def llama_tokenizer() -> Any:
    """A Llama 3 tokenizer over the 256 byte-level symbols plus its bos/eos (258 ids); HiDream pads with
    the eos, as Llama 3 has no pad token."""
    from transformers import PreTrainedTokenizerFast

    return _byte_level_tokenizer(
        PreTrainedTokenizerFast,
        after=_LLAMA_SPECIALS,
        prefix=_LLAMA_SPECIALS[:1],
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        pad_token="<|end_of_text|>",
        model_max_length=1024,
    )


def _long_clip() -> Any:
    """A CLIP text encoder with room for the 128 tokens HiDream pads its prompts to (its real CLIPs have
    248 positions)."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        projection_dim=32,
        vocab_size=1000,
        max_position_embeddings=128,
        hidden_act="gelu",
    )
    return CLIPTextModelWithProjection(config)


def _hidream(spec: TinySpec) -> Any:
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        HiDreamImagePipeline,
        HiDreamImageTransformer2DModel,
    )
    from transformers import LlamaConfig, LlamaForCausalLM

    from sdcli.diagnostics.tiny import _tokenizer

    transformer = HiDreamImageTransformer2DModel(
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_channels=[T5_WIDTH, 16],
        text_emb_dim=64,  # the two CLIPs' pooled outputs, 32 each
        num_routed_experts=4,
        num_activated_experts=2,
        axes_dims_rope=(4, 2, 2),
        max_resolution=(128, 128),
        llama_layers=(0, 1),
    )
    llama = LlamaForCausalLM(
        LlamaConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            vocab_size=256 + len(_LLAMA_SPECIALS),
            bos_token_id=256,
            eos_token_id=257,
            pad_token_id=257,
            max_position_embeddings=1024,
        )
    )
    return HiDreamImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_flow_vae(4),
        text_encoder=_long_clip(),
        tokenizer=_tokenizer(),
        text_encoder_2=_long_clip(),
        tokenizer_2=_tokenizer(),
        text_encoder_3=_t5_encoder(),
        tokenizer_3=_t5_tokenizer(),
        text_encoder_4=llama,
        tokenizer_4=llama_tokenizer(),
        transformer=transformer,
    )


def _hunyuan_image(spec: TinySpec) -> Any:
    from diffusers import (
        AdaptiveProjectedMixGuidance,
        AutoencoderKLHunyuanImage,
        FlowMatchEulerDiscreteScheduler,
        HunyuanImagePipeline,
        HunyuanImageTransformer2DModel,
    )
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    transformer = HunyuanImageTransformer2DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=4,
        attention_head_dim=8,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=(1, 1),
        guidance_embeds=False,
        text_embed_dim=32,
        text_embed_2_dim=32,
        rope_axes_dim=(4, 4),
    )
    vae = AutoencoderKLHunyuanImage(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(32, 64, 64, 64),
        layers_per_block=1,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        sample_size=128,
    )
    text_encoder = _qwen25_vl(32, [2, 2, 4])
    # ByT5 needs no vocabulary file: its ids are the bytes themselves.
    byt5 = T5EncoderModel(
        T5Config(
            d_model=32,
            d_kv=4,
            d_ff=16,
            num_layers=2,
            num_heads=2,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=32,
            vocab_size=256 + 3,
            feed_forward_proj="gated-gelu",
            is_encoder_decoder=False,
            use_cache=False,
        )
    )
    return HunyuanImagePipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder=text_encoder,
        tokenizer=qwen_tokenizer(),
        text_encoder_2=byt5,
        tokenizer_2=ByT5Tokenizer(),
        guider=AdaptiveProjectedMixGuidance(adaptive_projected_guidance_start_step=2),
        ocr_guider=AdaptiveProjectedMixGuidance(adaptive_projected_guidance_start_step=3),
    )


# Mistral's ids as the Pixtral processor uses them: image token 1, then bos/eos/pad, then chat markers.
_MISTRAL_SPECIALS = (
    "<unk>",
    "[IMG]",
    "<s>",
    "</s>",
    "<pad>",
    "[IMG_BREAK]",
    "[IMG_END]",
    "[INST]",
    "[/INST]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
)
# Mistral Small 3.1's template cut to what Flux2Pipeline sends: a system message and text (or image) turns.
_MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}[SYSTEM_PROMPT]{{ m['content'][0]['text'] }}[/SYSTEM_PROMPT]"
    "{% else %}[INST]{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% else %}[IMG]{% endif %}{% endfor %}[/INST]{% endif %}{% endfor %}"
)


def mistral_tokenizer() -> Any:
    """A byte-level Mistral tokenizer with Mistral Small 3.1's chat markers, standing in for the Pixtral
    processor FLUX.2 dev ships as its `tokenizer`: transformers' PixtralProcessor requires torchvision,
    which this environment lacks (so a real FLUX.2 dev does not load here even in plain diffusers). For
    text-to-image Flux2Pipeline only calls `apply_chat_template`, which the tokenizer has too."""
    from transformers import PreTrainedTokenizerFast

    return _byte_level_tokenizer(
        PreTrainedTokenizerFast,
        before=_MISTRAL_SPECIALS,
        additional=(_MISTRAL_SPECIALS[1], *_MISTRAL_SPECIALS[5:]),
        chat_template=_MISTRAL_CHAT_TEMPLATE,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=1024,
    )


def _flux2(spec: TinySpec) -> Any:
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        Flux2Pipeline,
    )
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    # FLUX.2 dev stacks the text encoder's hidden states 10, 20 and 30 by default: 30 layers let a plain
    # `pipe(prompt)` run with that default.
    transformer = _flux2_transformer(guidance_embeds=True)
    config = Mistral3Config(
        text_config={
            "model_type": "mistral",
            "vocab_size": len(_MISTRAL_SPECIALS) + 256,
            "hidden_size": 16,
            "intermediate_size": 16,
            "max_position_embeddings": 1024,
            "num_attention_heads": 2,
            "num_hidden_layers": 30,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "rms_norm_eps": 1e-05,
            "rope_theta": 1000000000.0,
            "sliding_window": None,
            "bos_token_id": 2,
            "eos_token_id": 3,
            "pad_token_id": 4,
        },
        vision_config={
            "model_type": "pixtral",
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "intermediate_size": 37,
            "image_size": 30,
            "patch_size": 6,
            "num_channels": 3,
        },
        vision_feature_layer=-1,
        image_token_index=1,
    )
    vae = _flux2_vae()
    return Flux2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=Mistral3ForConditionalGeneration(config),
        tokenizer=mistral_tokenizer(),
        transformer=transformer,
        vae=vae,
    )


def _ovis_image(spec: TinySpec) -> Any:
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        OvisImagePipeline,
        OvisImageTransformer2DModel,
    )

    transformer = OvisImageTransformer2DModel(
        **_FLUX_STACK,
        out_channels=4,
        joint_attention_dim=32,
        axes_dims_rope=(4, 4, 8),
    )
    vae = _flow_vae(1, (4,), norm_num_groups=1, sample_size=32)
    return OvisImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=_qwen3(2, causal_lm=False, hidden=32, intermediate=64, heads=4),
        tokenizer=qwen_tokenizer(),
        transformer=transformer,
    )


_BUILDERS = {
    "qwen-image": _qwen_image,
    "flux2-klein": _flux2_klein,
    "chroma": _chroma,
    "z-image": _z_image,
    "sana": _sana,
    "lumina2": _lumina2,
    "aura-flow": _aura_flow,
    "cogview4": _cogview4,
    "kandinsky3": _kandinsky3,
    "hidream": _hidream,
    "hunyuan-image": _hunyuan_image,
    "flux2": _flux2,
    "ovis-image": _ovis_image,
}


def build_tiny_new_family_pipeline(spec: TinySpec) -> Any:
    """A random-weight pipeline of one of `NEW_FAMILIES`, deterministic for a given spec."""
    import torch

    builder = _BUILDERS.get(spec.family)
    if builder is None:
        raise ValueError(f"unknown tiny pipeline family {spec.family!r}; one of {', '.join(NEW_FAMILIES)}")
    torch.manual_seed(spec.seed)
    return builder(spec)
