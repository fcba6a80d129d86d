"""Prompt text -> text-encoder embeddings, as AUTOMATIC1111 makes them, so pasted A1111 prompts mean the same.

- Attention syntax (`--weighting a1111`, the default): `(word)` x1.1, `((word))` x1.21, `[word]` /1.1,
  `(word:1.3)`, `\\(` for a literal bracket, and `BREAK` to start a new 75-token chunk. Weights scale each
  token's embedding, then the embeddings are rescaled to their original mean (A1111's "Original" emphasis).
- Long prompts: split into chunks of 75 tokens (a chunk breaks after a comma when one is within the last 20
  tokens), each encoded as BOS + tokens + EOS + padding, the results concatenated along the sequence axis;
  the negative prompt is padded with empty chunks to the same length. `long_prompts=False` keeps the first 75
  tokens, as diffusers does, and says how many were dropped.
- Clip skip in A1111 numbering: 1 is the last layer. SD 1.x/2.x apply the final layer norm to the chosen
  layer; SDXL uses the penultimate layer at clip skip 1, as diffusers and A1111 do.
- SDXL: both text encoders encode every chunk and their outputs are concatenated per token; the pooled
  embedding comes from the second encoder's first chunk.

A short prompt without attention syntax encodes to exactly what the pipeline's own `encode_prompt` makes, so
the engine always passes embeddings for pipelines with a CLIP tokenizer and text encoder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

CHUNK = 75  # tokens per chunk: CLIP's 77 positions less BOS and EOS
COMMA_BACKTRACK = 20  # A1111's default `comma_padding_backtrack`
ROUND, SQUARE = 1.1, 1 / 1.1
BREAK = -1.0  # the weight that marks a BREAK fragment
_ATTENTION = re.compile(
    r"""
    \\[()\[\]\\] | \\        # escaped bracket or backslash; a lone backslash
    | \( | \[                # openers
    | :\s*([+-]?[.\d]+)\s*\) # `:1.3)` closes a round bracket with an explicit weight
    | \) | \]                # closers
    | [^\\()\[\]:]+ | :      # plain text
    """,
    re.X,
)
_BREAK_WORD = re.compile(r"\s*\bBREAK\b\s*", re.S)

Fragment = tuple[str, float]


def parse_attention(text: str) -> list[Fragment]:
    """A1111's attention parser: (text, weight) fragments, equal neighbours merged; BREAK has weight -1."""
    parts: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for part in parts[start:]:
            if part[1] != BREAK:
                part[1] *= factor

    for match in _ATTENTION.finditer(text):
        token, weight = match[0], _number(match[1])
        if token.startswith("\\"):
            parts.append([token[1:], 1.0])
        elif token in "([":
            (round_open if token == "(" else square_open).append(len(parts))
        elif weight is not None and round_open:
            scale(round_open.pop(), weight)
        elif token == ")" and round_open:
            scale(round_open.pop(), ROUND)
        elif token == "]" and square_open:
            scale(square_open.pop(), SQUARE)
        else:
            for i, piece in enumerate(_BREAK_WORD.split(token)):
                if i:
                    parts.append(["BREAK", BREAK])
                parts.append([piece, 1.0])
    for start in round_open:  # unclosed brackets count as closed at the end, as in A1111
        scale(start, ROUND)
    for start in square_open:
        scale(start, SQUARE)
    merged: list[list[Any]] = []
    for part in parts or [["", 1.0]]:
        if merged and merged[-1][1] == part[1] != BREAK:
            merged[-1][0] += part[0]
        else:
            merged.append(part)
    return [(str(t), float(w)) for t, w in merged]


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:  # `(a:1.2.3)`: A1111 would crash; read it as a plain bracket
        return None


@dataclass(frozen=True)
class Tokens:
    chunks: tuple[tuple[tuple[int, ...], tuple[float, ...]], ...]  # (token ids, weights), at most 75 each
    total: int  # tokens in the prompt
    lost: int  # tokens dropped by truncation


def chunk(fragments: list[tuple[list[int] | None, float]], comma: int | None, long: bool) -> Tokens:
    """Token ids per fragment (None for BREAK) -> chunks of at most 75 tokens, as A1111 splits them."""
    chunks: list[tuple[tuple[int, ...], tuple[float, ...]]] = []
    ids: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close() -> None:
        nonlocal ids, weights, last_comma
        chunks.append((tuple(ids), tuple(weights)))
        ids, weights, last_comma = [], [], -1

    for tokens, weight in fragments:
        if tokens is None:
            close()
            continue
        for token in tokens:
            if token == comma:
                last_comma = len(ids)
            elif long and len(ids) == CHUNK and last_comma != -1 and CHUNK - last_comma <= COMMA_BACKTRACK:
                # Move the words after the last comma to the next chunk rather than cut one in two.
                cut = last_comma + 1
                carried = ids[cut:], weights[cut:]
                ids, weights = ids[:cut], weights[:cut]
                close()
                ids, weights = carried
            if len(ids) == CHUNK:
                close()
            ids.append(token)
            weights.append(weight)
    if ids or not chunks:
        close()
    total = sum(len(c[0]) for c in chunks)
    if long:
        return Tokens(tuple(chunks), total, 0)
    return Tokens(tuple(chunks[:1]), total, total - len(chunks[0][0]))


def tokenize(pipe: Any, tokenizer: Any, text: str, weighting: str, long: bool) -> Tokens:
    fragments = parse_attention(text) if weighting == "a1111" else [(text, 1.0)]
    convert = getattr(pipe, "maybe_convert_prompt", None)  # multi-vector textual-inversion tokens
    pieces = [convert(t, tokenizer) if convert else t for t, w in fragments if w != BREAK]
    found = iter(tokenizer(pieces, add_special_tokens=False, truncation=False).input_ids if pieces else [])
    tokenized = [(None if w == BREAK else list(next(found)), w) for _, w in fragments]
    return chunk(tokenized, tokenizer.get_vocab().get(",</w>"), long)


def _padded(
    tokenizer: Any, ids: tuple[int, ...], weights: tuple[float, ...]
) -> tuple[list[int], list[float]]:
    pad = CHUNK - len(ids)
    full = [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id, *[tokenizer.pad_token_id] * pad]
    return full, [1.0, *weights, *[1.0] * (pad + 1)]


def _encode(pipe: Any, encoder: Any, tokenizer: Any, tokens: Tokens, clip_skip: int, xl: bool) -> Any:
    """(embeddings [1, 77 * chunks, width], pooled embedding or None) for one text encoder."""
    import torch

    device = pipe._execution_device
    outputs, pooled = [], None
    use_mask = getattr(encoder.config, "use_attention_mask", False)
    for ids, weights in tokens.chunks:
        full, multipliers = _padded(tokenizer, ids, weights)
        input_ids = torch.tensor([full], device=device)
        mask = torch.ones_like(input_ids) if use_mask else None
        if not xl and clip_skip == 1:  # exactly the pipeline's own call
            z = encoder(input_ids, attention_mask=mask)[0]
        else:
            out = encoder(input_ids, attention_mask=mask, output_hidden_states=True)
            if xl:
                z = out.hidden_states[-(clip_skip + 1)]
                if pooled is None and out[0].ndim == 2:
                    pooled = out[0]
            else:
                z = getattr(encoder, "text_model", encoder).final_layer_norm(out.hidden_states[-clip_skip])
        if any(m != 1.0 for m in multipliers):
            z = _emphasis(z, multipliers)
        outputs.append(z)
    return torch.cat(outputs, dim=1), pooled


def _emphasis(z: Any, multipliers: list[float]) -> Any:
    """A1111's "Original" emphasis: scale each token's embedding, then restore the overall mean."""
    import torch

    weighted = z * torch.tensor(multipliers, dtype=z.dtype, device=z.device)[None, :, None]
    mean, new_mean = z.mean(), weighted.mean()
    # A1111 divides unguarded. An encoder whose output averages to ~0 (a final LayerNorm with no bias, as in
    # random-weight models) would make that a division by ~0 and the image NaN: keep the plain scaling then.
    negligible = z.abs().mean() * 1e-3
    if mean.abs() > negligible and new_mean.abs() > negligible:
        weighted = weighted * (mean / new_mean)
    return weighted


def _pad_chunks(tokens: Tokens, count: int) -> Tokens:
    """Empty chunks (BOS, EOS, padding) up to `count`, as A1111 pads the shorter of prompt and negative."""
    missing = max(count - len(tokens.chunks), 0)
    return Tokens(tokens.chunks + (((), ()),) * missing, tokens.total, tokens.lost)


@dataclass(frozen=True)
class Conditioning:
    """Embeddings for one prompt and its negative, batch size 1, plus warnings for the user."""

    tensors: dict[str, Any]
    notes: tuple[str, ...] = ()
    chunks: int = 1

    def batch(self, n: int) -> dict[str, Any]:
        return {k: v.repeat(n, *([1] * (v.ndim - 1))) for k, v in self.tensors.items()}


def _encoders(pipe: Any) -> list[tuple[Any, Any]]:
    """(tokenizer, text encoder) pairs in the order the pipeline concatenates them; SDXL's refiner has only
    the second."""
    pairs = [
        (getattr(pipe, tokenizer, None), getattr(pipe, encoder, None))
        for tokenizer, encoder in (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2"))
    ]
    return [(t, e) for t, e in pairs if t is not None and e is not None]


def supported(pipe: Any) -> bool:
    if getattr(pipe, "tokenizer", None) is not None and getattr(pipe, "text_encoder", None) is not None:
        return True
    return getattr(pipe, "tokenizer", None) is None and bool(_encoders(pipe))  # an SDXL refiner


def encode(
    pipe: Any, prompt: str, negative: str, *, weighting: str = "a1111", clip_skip: int = 1, long: bool = True
) -> Conditioning | None:
    """The pipeline's `prompt_embeds` (and SDXL's pooled ones); None for a pipeline with no CLIP encoder."""
    import torch

    from sdcli.errors import UsageError

    if not supported(pipe):
        return None
    xl = getattr(pipe, "text_encoder_2", None) is not None
    pairs = _encoders(pipe)
    layers = min(encoder.config.num_hidden_layers for _, encoder in pairs)
    if clip_skip > layers:
        raise UsageError(f"--clip-skip {clip_skip} is more than the text encoder's {layers} layers")
    texts = {"prompt": prompt, "negative": negative}
    tokens = {
        (kind, i): tokenize(pipe, tokenizer, text, weighting, long)
        for kind, text in texts.items()
        for i, (tokenizer, _) in enumerate(pairs)
    }
    count = max(len(t.chunks) for t in tokens.values())
    tensors: dict[str, Any] = {}
    with torch.no_grad():
        for kind, key in (("prompt", "prompt_embeds"), ("negative", "negative_prompt_embeds")):
            encoded = [
                _encode(pipe, encoder, tok, _pad_chunks(tokens[kind, i], count), clip_skip, xl)
                for i, (tok, encoder) in enumerate(pairs)
            ]
            tensors[key] = torch.cat([z for z, _ in encoded], dim=-1)
            if xl:
                tensors[key.replace("prompt_embeds", "pooled_prompt_embeds")] = encoded[-1][1]
    if xl and not negative and getattr(pipe.config, "force_zeros_for_empty_prompt", False):
        # No negative prompt: SDXL's reference sampling (and diffusers' `pipe(prompt)`) guides away from
        # zeros, not from the encoded empty text.
        for key in ("negative_prompt_embeds", "negative_pooled_prompt_embeds"):
            tensors[key] = torch.zeros_like(tensors[key])
    notes = tuple(
        f"the {'negative prompt' if kind == 'negative' else 'prompt'} is {t.total} tokens; the text encoder "
        f"takes {CHUNK}: {t.lost} tokens were dropped (--no-long-prompts)"
        for (kind, i), t in tokens.items()
        if t.lost and i == 0
    )
    return Conditioning(tensors, notes, count)
