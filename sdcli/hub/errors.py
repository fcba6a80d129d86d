"""huggingface_hub failures turned into sdcli errors with a message and a hint a person can act on.

One place for it, so every Hub call site says the same thing for the same cause. The order of the checks
matters: GatedRepoError is a RepositoryNotFoundError, LocalEntryNotFoundError and HfHubHTTPError are OSErrors.
"""

from __future__ import annotations

import errno
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sdcli.errors import ModelUnavailable, OutputError, SdcliError, UsageError

TOKEN_HINT = "if the model is private, set HF_TOKEN or run `hf auth login`"
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR})
_TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9]{8,}")


@contextmanager
def hub_errors(repo_id: str, *, revision: str | None = None, target: Path | None = None) -> Iterator[None]:
    """Translate what huggingface_hub, httpx and the file system raise into ModelUnavailable / OutputError /
    UsageError. `target` names where files were being written, for disk errors. Anything else propagates."""
    try:
        yield
    except SdcliError:
        raise
    except Exception as exc:
        mapped = _translate(exc, repo_id, revision, target)
        if mapped is None:
            raise
        hint = redact(mapped.hint) if mapped.hint else None
        raise type(mapped)(redact(mapped.message), hint=hint) from exc


def not_cached(repo_id: str, missing: list[str] | None = None) -> ModelUnavailable:
    detail = f" ({len(missing)} files missing, e.g. {missing[0]})" if missing else ""
    return ModelUnavailable(
        f"{repo_id} is not in the local cache{detail}; run `sdcli download {repo_id}` where there is network",
        hint="offline mode is on (--offline or HF_HUB_OFFLINE=1): nothing is fetched from the Hub",
    )


def unreachable(exc: BaseException) -> ModelUnavailable:
    from sdcli.hub.settings import hub_endpoint

    return ModelUnavailable(
        f"cannot reach the Hub at {hub_endpoint()} ({_reason(exc)})",
        hint="check the network and HF_ENDPOINT; a model downloaded before works with --offline "
        "(or HF_HUB_OFFLINE=1)",
    )


def redact(text: str) -> str:
    """Messages quote exception text; make sure no token ever reaches the terminal through them."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if secret := os.environ.get(name, "").strip():
            text = text.replace(secret, "***")
    return _TOKEN_SHAPE.sub("hf_***", text)


def _translate(exc: Exception, repo: str, revision: str | None, target: Path | None) -> SdcliError | None:
    from huggingface_hub import errors as hf

    from sdcli.hub.settings import hub_endpoint, is_offline

    if isinstance(exc, hf.HFValidationError):
        return UsageError(
            f"'{repo}' is not a valid model id ({_reason(exc)})",
            hint="use the Hub id owner/name, e.g. stable-diffusion-v1-5/stable-diffusion-v1-5",
        )
    if isinstance(exc, hf.OfflineModeIsEnabled):
        return not_cached(repo)
    if isinstance(exc, hf.GatedRepoError):
        return ModelUnavailable(
            f"model '{repo}' is gated: its licence must be accepted before downloading",
            hint=f"accept the licence on {hub_endpoint()}/{repo} while logged in, then set HF_TOKEN "
            "or run `hf auth login`",
        )
    if isinstance(exc, hf.RepositoryNotFoundError):
        return ModelUnavailable(
            f"model '{repo}' was not found on the Hub",
            hint=f"check the spelling (owner/name); {TOKEN_HINT}",
        )
    if isinstance(exc, hf.RevisionNotFoundError):
        return ModelUnavailable(
            f"revision '{revision or 'main'}' was not found in model '{repo}'",
            hint="use a branch, tag or commit hash that exists in the repo (the default is main)",
        )
    if isinstance(exc, hf.DisabledRepoError):
        return ModelUnavailable(f"model '{repo}' has been disabled on the Hub")
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        return ModelUnavailable(f"a file listed for '{repo}' is missing on the Hub ({_reason(exc)})")
    if isinstance(exc, hf.LocalEntryNotFoundError):
        return not_cached(repo) if is_offline() else unreachable(exc.__cause__ or exc)
    if isinstance(exc, hf.HfHubHTTPError):
        return _http_status(exc, repo)
    if _is_network_error(exc):
        return unreachable(exc)
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        where = exc.filename or target or "the download folder"
        return OutputError(
            f"cannot write to {where}: {exc.strerror}",
            hint="choose another folder with --to, or point HF_HOME at a writable disk with enough space",
        )
    if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        return ModelUnavailable(
            f"the download of '{repo}' was cut short",
            hint="run the same command again; finished files are kept",
        )
    return None


def _http_status(exc: Exception, repo: str) -> ModelUnavailable:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", 0)
    if status in (401, 403):
        return ModelUnavailable(f"the Hub refused access to '{repo}' (HTTP {status})", hint=TOKEN_HINT)
    if status == 429:
        return ModelUnavailable(
            "the Hub is rate-limiting requests (HTTP 429)", hint="wait a minute and retry"
        )
    if status >= 500:
        return ModelUnavailable(
            f"the Hub failed to answer for '{repo}' (HTTP {status})", hint="try again later"
        )
    return ModelUnavailable(f"the Hub answered HTTP {status} for '{repo}' ({_reason(exc)})")


def _is_network_error(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror)):
        return True
    try:  # huggingface_hub 1.x+ speaks httpx (packaged as httpx2 in some builds), 0.x speaks requests
        import httpx2 as httpx_mod  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            import httpx as httpx_mod  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:
            return False
    return isinstance(exc, httpx_mod.TransportError)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = next((line for line in text if line.strip()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
