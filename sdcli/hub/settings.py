"""The Hub settings sdcli reads at call time: the endpoint, the timeouts, and whether it may go online.

huggingface_hub freezes its environment into `huggingface_hub.constants` when first imported, so these
read the variables themselves."""

from __future__ import annotations

import os

DEFAULT_ENDPOINT = "https://huggingface.co"


_TRUE = frozenset({"1", "ON", "YES", "TRUE"})


_offline_flag = False  # set by --offline through set_offline()


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def etag_timeout() -> float:
    try:
        return float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or 10)
    except ValueError:
        return 10.0


def is_offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return _offline_flag or env.strip().upper() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def set_offline(offline: bool = True) -> None:
    """`--offline`: also switches huggingface_hub (so diffusers/transformers too) off the network."""
    global _offline_flag
    from huggingface_hub import constants

    _offline_flag = offline
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    else:
        os.environ.pop("HF_HUB_OFFLINE", None)
    constants.HF_HUB_OFFLINE = offline
