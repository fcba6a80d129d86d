"""The sampler table: name resolution, and resolve -> build -> describe round trips on real diffusers."""

from __future__ import annotations

import inspect
import subprocess
import sys
import warnings

import pytest

from sdcli.diagnostics.tiny import SD15_SCHEDULER
from sdcli.errors import UsageError
from sdcli.model import schedulers
from sdcli.model.schedulers import SAMPLERS, build, describe, resolve

# The SD 1.5 scheduler config as published (runwayml/stable-diffusion-v1-5 ships PNDMScheduler).
SD15 = {"_class_name": "PNDMScheduler", **SD15_SCHEDULER, "trained_betas": None}
ALL_COMBOS = [(s.name, sched) for s in SAMPLERS for sched in (None, *s.schedules)]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("euler a", ("Euler a", None)),
        ("EULER A", ("Euler a", None)),
        ("  dpm++   2m ", ("DPM++ 2M", None)),
        ("EulerAncestralDiscreteScheduler", ("Euler a", None)),
        ("DPMSolverMultistepScheduler", ("DPM++ 2M", None)),
        ("DPMSolverSinglestepScheduler", ("DPM++ SDE", None)),
        ("PNDM", ("PLMS", None)),
        ("PNDMScheduler", ("PLMS", None)),
        ("DEISMultistepScheduler", ("DEIS", None)),
        ("DPM++ 2M Karras", ("DPM++ 2M", "Karras")),
        ("dpm++ 2m sde exponential", ("DPM++ 2M SDE", "Exponential")),
        ("DPM2 a Karras", ("DPM2 a", "Karras")),
        ("Euler SGM Uniform", ("Euler", "SGM Uniform")),
        ("dpmpp_2m_k", ("DPM++ 2M", "Karras")),  # InvokeAI
        ("euler_ancestral", ("Euler a", None)),  # ComfyUI
    ],
)
def test_resolve_names(given: str, expected: tuple[str, str | None]) -> None:
    choice = resolve(given)
    assert (choice.sampler, choice.schedule) == expected


def test_explicit_schedule_wins_over_the_name() -> None:
    choice = resolve("DPM++ 2M Karras", "Exponential")
    assert choice.schedule == "Exponential"
    assert choice.kwargs["use_exponential_sigmas"] is True
    assert "use_karras_sigmas" not in choice.kwargs


@pytest.mark.parametrize("automatic", ["Automatic", "automatic", "Uniform"])
def test_automatic_means_the_model_default(automatic: str) -> None:
    assert resolve("DPM++ 2M Karras", automatic).schedule is None


def test_unknown_sampler_suggests_the_closest() -> None:
    with pytest.raises(UsageError) as err:
        resolve("Eulr a")
    assert "Eulr a" in err.value.message
    assert err.value.hint is not None and "'Euler a'" in err.value.hint
    assert len(err.value.hint) < 120  # a suggestion, not the whole table


def test_unknown_schedule_suggests_the_closest() -> None:
    with pytest.raises(UsageError) as err:
        resolve("Euler", "Karas")
    assert err.value.hint is not None and "'Karras'" in err.value.hint


def test_unsupported_schedule_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="Karras"):
        resolve("DDIM", "Karras")
    with pytest.raises(UsageError, match="SGM Uniform"):
        resolve("DPM++ SDE", "SGM Uniform")


def test_choice_kwargs() -> None:
    assert resolve("Euler", "Karras").kwargs == {"use_karras_sigmas": True}
    assert resolve("DDIM", "SGM Uniform").kwargs == {"timestep_spacing": "trailing"}
    sde = resolve("DPM++ 2M SDE Heun").kwargs
    assert sde["algorithm_type"] == "sde-dpmsolver++" and sde["solver_type"] == "heun"
    assert resolve("DPM++ 3M SDE").kwargs["solver_order"] == 3
    # DPMSolverSinglestep has no timestep_spacing: the Exponential schedule must not pass one.
    assert "timestep_spacing" not in resolve("DPM++ SDE", "Exponential").kwargs


def test_table_matches_diffusers_signatures() -> None:
    import diffusers

    for s in SAMPLERS:
        cls = getattr(diffusers, s.cls)
        params = set(inspect.signature(cls.__init__).parameters)
        if "kwargs" in params:  # a placeholder for a missing optional dependency (LMS without scipy)
            continue
        assert {k for k, _ in s.kwargs} <= params, s.name
        for sched, flag in schedulers.SIGMA_FLAGS.items():
            assert (sched in s.schedules) == (flag in params), (s.name, sched)
        if s.name != "LCM":  # LCM accepts timestep_spacing but ignores it
            assert ("SGM Uniform" in s.schedules) == ("timestep_spacing" in params), s.name


@pytest.mark.parametrize(("name", "schedule"), ALL_COMBOS)
def test_round_trip_through_diffusers(name: str, schedule: str | None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = build(resolve(name, schedule), SD15)
    assert describe(type(built).__name__, built.config) == (name, schedule)
    assert built.config["beta_schedule"] == "scaled_linear"  # the model's config is kept


def test_switching_resets_sigma_flags_of_the_base_config() -> None:
    base = {**SD15, "_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": True}
    built = build(resolve("Euler", "Exponential"), base)
    assert not built.config["use_karras_sigmas"]
    assert describe(type(built).__name__, built.config) == ("Euler", "Exponential")
    plain = build(resolve("DPM++ 2M"), base)
    assert describe(type(plain).__name__, plain.config) == ("DPM++ 2M", None)
    # Only keys the class takes: DDIM has no sigma flags, so none are passed.
    assert schedulers.config_overrides(resolve("DDIM"), base) == {}


def test_switching_from_an_sde_config_to_plain_2m() -> None:
    base = {**SD15, "algorithm_type": "sde-dpmsolver++", "solver_order": 3}
    built = build(resolve("DPM++ 2M"), base)
    assert describe(type(built).__name__, built.config) == ("DPM++ 2M", None)


def test_describe_unknown_class_and_defaults() -> None:
    assert describe("FlowMatchEulerDiscreteScheduler", {}) == ("FlowMatchEulerDiscreteScheduler", None)
    assert describe("PNDMScheduler", SD15) == ("PLMS", None)
    assert describe("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}) == (
        "DPM++ 2M SDE",
        None,
    )


def test_names_lists_every_sampler() -> None:
    rows = schedulers.names()
    assert [row["name"] for row in rows] == [s.name for s in SAMPLERS]
    assert any(row["name"] == "DPM++ 2M" and "Karras" in row["schedules"] for row in rows)


def test_split_schedule() -> None:
    assert schedulers.split_schedule("DPM++ 2M SDE Karras") == ("DPM++ 2M SDE", "Karras")
    assert schedulers.split_schedule("DPM++ 2M SDE Heun") == ("DPM++ 2M SDE Heun", None)
    assert schedulers.split_schedule("Restart") == ("Restart", None)


def test_importing_does_not_import_diffusers() -> None:
    code = (
        "import sys, sdcli.model.schedulers, sdcli.images.metadata\n"
        "print('diffusers' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
