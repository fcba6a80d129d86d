"""Prompt encoding: A1111 attention syntax, 75-token chunks, clip skip, and equivalence with diffusers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sdcli.generation import prompts
from sdcli.generation.prompts import BREAK, CHUNK, chunk, parse_attention
from tests.png_helpers import params_and_record, pixels
from tests.test_process import run_probe

# A1111's own examples (modules/prompt_parser.py), as (text, weight) pairs.
A1111_EXAMPLES = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ("a ", 1.0),
            ("house", 1.573),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.4641),
            (".", 1.1),
        ],
    ),
    ("[cat]", [("cat", 1 / 1.1)]),
    ("(cat:1.0)", [("cat", 1.0)]),
    ("a (cat:1.0) b", [("a cat b", 1.0)]),
    ("a BREAK b", [("a", 1.0), ("BREAK", BREAK), ("b", 1.0)]),
    ("(a BREAK b:2)", [("a", 2.0), ("BREAK", BREAK), ("b", 2.0)]),
    ("(x:1.2.3)", [("x:1.2.3)", 1.1)]),
    ("", [("", 1.0)]),
]


@pytest.mark.parametrize(("text", "expected"), A1111_EXAMPLES)
def test_parse_attention_like_a1111(text: str, expected: list[tuple[str, float]]) -> None:
    parsed = parse_attention(text)
    assert [t for t, _ in parsed] == [t for t, _ in expected]
    assert [w for _, w in parsed] == pytest.approx([w for _, w in expected])


def test_chunks_of_75_and_comma_backtracking() -> None:
    comma = 999
    plain = chunk([(list(range(80)), 1.0)], comma, long=True)
    assert [len(ids) for ids, _ in plain.chunks] == [75, 5] and plain.total == 80 and plain.lost == 0
    # A comma within the last 20 tokens of a full chunk: the words after it move to the next chunk.
    tokens = list(range(70)) + [comma] + list(range(10))
    moved = chunk([(tokens, 1.2)], comma, long=True)
    assert [len(ids) for ids, _ in moved.chunks] == [71, 10]
    assert moved.chunks[0][1] == (1.2,) * 71
    cut = chunk([(tokens, 1.0)], comma, long=False)
    assert [len(ids) for ids, _ in cut.chunks] == [75] and cut.lost == 6
    broken = chunk([([1, 2], 1.0), (None, BREAK), ([3], 1.0)], comma, long=True)
    assert [ids for ids, _ in broken.chunks] == [(1, 2), (3,)]
    assert chunk([], comma, long=True).chunks == (((), ()),)


def test_emphasis_restores_the_mean_and_survives_a_zero_mean() -> None:
    import torch

    z = torch.rand(1, 77, 8, generator=torch.Generator().manual_seed(0)) + 0.5
    weights = [1.0] * 77
    weights[3] = 1.5
    out = prompts._emphasis(z, weights)
    assert torch.allclose(out.mean(), z.mean())
    assert torch.allclose(out[0, 3] / z[0, 3], 1.5 * out[0, 0] / z[0, 0])
    # A zero-mean encoder output (random test models): plain scaling, never a division by ~0.
    centred = z - z.mean()
    assert torch.equal(prompts._emphasis(centred, weights), centred * torch.tensor(weights)[None, :, None])


def test_short_plain_prompts_encode_exactly_as_diffusers_does(tiny_sd: Path, tiny_sdxl: Path) -> None:
    import torch
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    sd = StableDiffusionPipeline.from_pretrained(tiny_sd)
    ours = prompts.encode(sd, "a red boat", "blurry")
    assert ours is not None
    theirs = sd.encode_prompt("a red boat", sd.device, 1, True, "blurry")
    assert torch.equal(ours.tensors["prompt_embeds"], theirs[0])
    assert torch.equal(ours.tensors["negative_prompt_embeds"], theirs[1])

    xl = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl)
    names = (
        "prompt_embeds",
        "negative_prompt_embeds",
        "pooled_prompt_embeds",
        "negative_pooled_prompt_embeds",
    )
    # No negative prompt is diffusers' negative_prompt=None: zeros, as SDXL's config asks
    # (force_zeros_for_empty_prompt); a negative prompt is encoded.
    for negative, given in (("", None), ("blurry", "blurry")):
        ours = prompts.encode(xl, "a red boat", negative)
        assert ours is not None
        theirs = xl.encode_prompt("a red boat", device=xl.device, negative_prompt=given)
        for name, tensor in zip(names, theirs, strict=True):
            assert torch.equal(ours.tensors[name], tensor), (negative, name)
    assert not ours.tensors["negative_prompt_embeds"].eq(0).all()


def make(cli, model: Path, prompt: str, out: str, *extra: object):
    result = cli("generate", prompt, "-m", model, "--steps", "2", "--seed", "3", "-o", out, *extra)
    assert result.exit_code == 0, result.stderr
    return result


HEAD = "a red boat on a calm sea, " * 6  # 114 tokens with the tiny byte-level tokenizer


def token_count(model: Path, text: str) -> int:
    from transformers import CLIPTokenizer

    return len(CLIPTokenizer.from_pretrained(model / "tokenizer")(text, add_special_tokens=False).input_ids)


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_the_tail_of_a_long_prompt_counts(cli, family: str, tiny_sd: Path, tiny_sdxl: Path) -> None:
    model = tiny_sd if family == "sd" else tiny_sdxl
    assert token_count(model, HEAD) > CHUNK
    make(cli, model, HEAD + "golden light", "a.png")
    make(cli, model, HEAD + "stormy night", "b.png")
    assert not np.array_equal(pixels("a.png"), pixels("b.png"))
    assert params_and_record("a.png")[1]["prompt"] == HEAD + "golden light"


def test_no_long_prompts_cuts_at_75_tokens_and_says_how_many_were_lost(cli, tiny_sd: Path) -> None:
    lost = token_count(tiny_sd, HEAD + "golden light") - CHUNK
    first = make(cli, tiny_sd, HEAD + "golden light", "a.png", "--no-long-prompts")
    make(cli, tiny_sd, HEAD + "stormy night", "b.png", "--no-long-prompts")
    assert np.array_equal(pixels("a.png"), pixels("b.png"))
    warnings = [line for line in first.stderr.splitlines() if "dropped" in line]
    assert len(warnings) == 1 and f"{lost} tokens were dropped" in warnings[0]
    assert params_and_record("a.png")[1]["long_prompts"] is False


def test_attention_weights(cli, tiny_sd: Path) -> None:
    make(cli, tiny_sd, "a cat on a boat", "plain.png")
    make(cli, tiny_sd, "a (cat:1.5) on a boat", "strong.png")
    make(cli, tiny_sd, "a (cat:1.0) on a boat", "neutral.png")
    make(cli, tiny_sd, "a (cat:1.0) on a boat", "literal.png", "--weighting", "none")
    assert not np.array_equal(pixels("plain.png"), pixels("strong.png"))
    assert np.array_equal(pixels("plain.png"), pixels("neutral.png"))
    assert not np.array_equal(pixels("plain.png"), pixels("literal.png"))
    text, record = params_and_record("strong.png")
    assert text.splitlines()[0] == "a (cat:1.5) on a boat" and record["weighting"] == "a1111"
    assert params_and_record("literal.png")[1]["weighting"] == "none"


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_clip_skip(cli, family: str, tiny_sd: Path, tiny_sdxl: Path) -> None:
    model = tiny_sd if family == "sd" else tiny_sdxl
    make(cli, model, "a cat", "one.png")
    make(cli, model, "a cat", "two.png", "--clip-skip", "2")
    assert not np.array_equal(pixels("one.png"), pixels("two.png"))
    one, two = params_and_record("one.png"), params_and_record("two.png")
    assert "Clip skip" not in one[0] and one[1]["clip_skip"] == 1
    assert "Clip skip: 2," in two[0] and two[1]["clip_skip"] == 2


def test_clip_skip_comes_back_with_from(cli, tiny_sd: Path) -> None:
    make(cli, tiny_sd, "a (cat:1.2)", "first.png", "--clip-skip", "2")
    result = cli("generate", "--from", "first.png", "-m", tiny_sd, "-o", "again.png")
    assert result.exit_code == 0, result.stderr
    assert params_and_record("again.png")[1]["clip_skip"] == 2
    assert np.array_equal(pixels("first.png"), pixels("again.png"))


def test_clip_skip_beyond_the_encoder_is_a_usage_error(cli, tiny_sd: Path) -> None:
    result = cli("generate", "a cat", "-m", tiny_sd, "--steps", "1", "--clip-skip", "3")
    assert result.exit_code == 2 and "more than the text encoder's 2 layers" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("generate", "a cat", "--clip-skip", "0"),
        ("generate", "a cat", "--weighting", "compel"),
        ("generate", "a cat", "-m", "model.ckpt"),
        ("generate", "a cat", "--lora", "style.pt"),
        ("generate", "a cat", "--lora", "style.safetensors:inf"),
    ],
)
def test_usage_errors_never_import_torch(args: tuple[str, ...]) -> None:
    code, heavy, stderr = run_probe(*args)
    assert (code, heavy) == (2, "none"), stderr
