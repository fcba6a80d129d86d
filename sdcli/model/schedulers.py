"""The one table that maps AUTOMATIC1111 sampler names to diffusers schedulers, and back.

Everything here is pure data and string handling, except `build`, which imports diffusers when it is called:
`sdcli info --schedulers` and metadata parsing must not pay for importing torch.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sdcli.errors import UsageError, first_line

KARRAS, EXPONENTIAL, BETA, SGM_UNIFORM = "Karras", "Exponential", "Beta", "SGM Uniform"
ALL_SCHEDULES = (KARRAS, EXPONENTIAL, BETA, SGM_UNIFORM)
SIGMA_SCHEDULES = (KARRAS, EXPONENTIAL, BETA)
SIGMA_FLAGS = {KARRAS: "use_karras_sigmas", EXPONENTIAL: "use_exponential_sigmas", BETA: "use_beta_sigmas"}


@dataclass(frozen=True)
class Schedule:
    name: str
    kwargs: tuple[tuple[str, Any], ...]
    aliases: tuple[str, ...] = ()


# diffusers' own advice (schedulers overview): exponential and beta sigmas want linspace timesteps.
SCHEDULES = (
    Schedule(KARRAS, (("use_karras_sigmas", True),), ("karras",)),
    Schedule(EXPONENTIAL, (("use_exponential_sigmas", True), ("timestep_spacing", "linspace"))),
    Schedule(BETA, (("use_beta_sigmas", True), ("timestep_spacing", "linspace"))),
    Schedule(SGM_UNIFORM, (("timestep_spacing", "trailing"),), ("sgm_uniform", "Simple", "trailing")),
)
# Names meaning "whatever the model's scheduler config says". A1111's "Uniform" and ComfyUI's "normal" are the
# model's own discrete sigmas, which is what diffusers uses by default.
DEFAULT_SCHEDULE_NAMES = ("automatic", "default", "none", "uniform", "normal")


@dataclass(frozen=True)
class Sampler:
    name: str  # A1111's label
    cls: str  # diffusers class name
    kwargs: tuple[tuple[str, Any], ...] = ()
    default_schedule: str | None = None  # what A1111's "Automatic" picks for this sampler
    schedules: tuple[str, ...] = ALL_SCHEDULES  # the schedule types this class can take in diffusers 0.42
    aliases: tuple[str, ...] = ()  # ComfyUI sampler_name / InvokeAI scheduler spellings


# DPMSolverMultistep variants spell out every identity key, so that a model whose own config is, say,
# sde-dpmsolver++ does not leak into a plain "DPM++ 2M".
_DPM2M = (("algorithm_type", "dpmsolver++"), ("solver_type", "midpoint"), ("solver_order", 2))
_SDE2M = (("algorithm_type", "sde-dpmsolver++"), ("solver_type", "midpoint"), ("solver_order", 2))
_SPACING_ONLY = (SGM_UNIFORM,)

SAMPLERS: tuple[Sampler, ...] = (
    Sampler("Euler", "EulerDiscreteScheduler", aliases=("euler",)),
    Sampler(
        "Euler a", "EulerAncestralDiscreteScheduler", (), None, _SPACING_ONLY, ("euler_ancestral", "euler_a")
    ),
    Sampler("Heun", "HeunDiscreteScheduler", aliases=("heun",)),
    Sampler("LMS", "LMSDiscreteScheduler", aliases=("lms",)),
    Sampler("DPM2", "KDPM2DiscreteScheduler", (), KARRAS, aliases=("dpm_2", "kdpm_2")),
    Sampler("DPM2 a", "KDPM2AncestralDiscreteScheduler", (), KARRAS, aliases=("dpm_2_ancestral", "kdpm_2_a")),
    Sampler("DPM++ 2M", "DPMSolverMultistepScheduler", _DPM2M, KARRAS, aliases=("dpmpp_2m",)),
    Sampler("DPM++ 2M SDE", "DPMSolverMultistepScheduler", _SDE2M, EXPONENTIAL, aliases=("dpmpp_2m_sde",)),
    Sampler(
        "DPM++ 2M SDE Heun",
        "DPMSolverMultistepScheduler",
        (("algorithm_type", "sde-dpmsolver++"), ("solver_type", "heun"), ("solver_order", 2)),
        EXPONENTIAL,
        aliases=("dpmpp_2m_sde_heun",),
    ),
    # Approximate: diffusers' third-order SDE multistep is the closest thing to k-diffusion's 3M SDE.
    Sampler(
        "DPM++ 3M SDE",
        "DPMSolverMultistepScheduler",
        (("algorithm_type", "sde-dpmsolver++"), ("solver_type", "midpoint"), ("solver_order", 3)),
        EXPONENTIAL,
        aliases=("dpmpp_3m_sde",),
    ),
    # Singlestep takes no timestep_spacing, so no SGM Uniform. The SDE variant keeps the stochastic
    # character of k-diffusion's DPM++ SDE (the deterministic singlestep solver is DPM++ 2S).
    Sampler(
        "DPM++ SDE",
        "DPMSolverSinglestepScheduler",
        # lower_order_final: diffusers forces it on anyway with final_sigmas_type "zero" (and warns).
        (("algorithm_type", "sde-dpmsolver++"), ("solver_order", 2), ("lower_order_final", True)),
        KARRAS,
        SIGMA_SCHEDULES,
        ("dpmpp_sde",),
    ),
    Sampler("DDIM", "DDIMScheduler", (), None, _SPACING_ONLY, ("ddim",)),
    Sampler("PLMS", "PNDMScheduler", (), None, _SPACING_ONLY, ("PNDM",)),
    Sampler("UniPC", "UniPCMultistepScheduler", aliases=("uni_pc", "unipc")),
    # LCMScheduler takes timestep_spacing but never reads it (diffusers 0.42), so no schedule types at all.
    Sampler("LCM", "LCMScheduler", (), None, (), ("lcm",)),
    Sampler("DDPM", "DDPMScheduler", (), None, _SPACING_ONLY, ("ddpm",)),
    Sampler("DEIS", "DEISMultistepScheduler", aliases=("deis",)),
)


@dataclass(frozen=True)
class SchedulerChoice:
    sampler: str  # A1111 name
    cls: str  # diffusers class name
    kwargs: dict[str, Any]  # config keys this choice sets on top of the model's scheduler config
    schedule: str | None  # None: the model's default schedule


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _sampler_lookup() -> dict[str, Sampler]:
    table: dict[str, Sampler] = {}
    for s in SAMPLERS:
        # The first entry for a class wins, so "DPMSolverMultistepScheduler" means plain DPM++ 2M.
        for key in (s.cls, s.cls.removesuffix("Scheduler"), *s.aliases):
            table.setdefault(_norm(key), s)
    for s in SAMPLERS:  # A1111 labels outrank class names and aliases
        table[_norm(s.name)] = s
    return table


def _schedule_lookup() -> dict[str, Schedule]:
    return {_norm(key): sch for sch in SCHEDULES for key in (sch.name, *sch.aliases)}


_SAMPLER_BY_KEY = _sampler_lookup()
_SCHEDULE_BY_KEY = _schedule_lookup()


def split_schedule(name: str) -> tuple[str, str | None]:
    """Split a legacy combined name ("DPM++ 2M Karras") into sampler and schedule; no validation."""
    stripped = " ".join(name.split())
    for key in sorted(_SCHEDULE_BY_KEY, key=len, reverse=True):
        if stripped.casefold().endswith(" " + key):
            return stripped[: -len(key) - 1], _SCHEDULE_BY_KEY[key].name
    if stripped.casefold().endswith("_k"):  # InvokeAI: "dpmpp_2m_k" is DPM++ 2M with Karras sigmas
        return stripped[:-2], KARRAS
    return stripped, None


def _unknown(kind: str, given: str, candidates: list[str]) -> UsageError:
    by_norm = {_norm(c): c for c in candidates}
    close = difflib.get_close_matches(_norm(given), list(by_norm), n=1, cutoff=0.4)
    hint = f"did you mean {by_norm[close[0]]!r}? " if close else ""
    return UsageError(f"unknown {kind} {given!r}", hint=hint + "`sdcli info --schedulers` lists them all")


def find_sampler(name: str) -> Sampler | None:
    return _SAMPLER_BY_KEY.get(_norm(name))


def _resolve_schedule(sampler: Sampler, schedule: str) -> str | None:
    if _norm(schedule) in DEFAULT_SCHEDULE_NAMES:
        return None
    found = _SCHEDULE_BY_KEY.get(_norm(schedule))
    if found is None:
        raise _unknown("schedule type", schedule, [*ALL_SCHEDULES, "Automatic"])
    if found.name not in sampler.schedules:
        supported = ", ".join(sampler.schedules) or "none"
        raise UsageError(
            f"sampler {sampler.name!r} does not take the {found.name} schedule",
            hint=f"{sampler.name} takes: {supported} (or Automatic)",
        )
    return found.name


def resolve(name: str, schedule: str | None = None) -> SchedulerChoice:
    """Turn a user's sampler (and schedule) spelling into one table entry; raise UsageError if unknown."""
    sampler = find_sampler(name)
    named_schedule: str | None = None
    if sampler is None:
        base, named_schedule = split_schedule(name)
        sampler = find_sampler(base) if named_schedule else None
    if sampler is None:
        raise _unknown("sampler", name, [s.name for s in SAMPLERS] + [s.cls for s in SAMPLERS])
    wanted = schedule if schedule is not None else named_schedule
    sched = _resolve_schedule(sampler, wanted) if wanted is not None else None
    kwargs = dict(sampler.kwargs)
    if sched is not None:
        sched_kwargs = dict(next(s.kwargs for s in SCHEDULES if s.name == sched))
        if SGM_UNIFORM not in sampler.schedules:  # the class has no timestep_spacing at all
            sched_kwargs.pop("timestep_spacing", None)
        kwargs.update(sched_kwargs)
    return SchedulerChoice(sampler.name, sampler.cls, kwargs, sched)


def config_overrides(choice: SchedulerChoice, base_config: Mapping[str, Any]) -> dict[str, Any]:
    """The keys `build` sets on top of the model's config (what the sdcli record stores)."""
    sampler = find_sampler(choice.sampler)
    supported = sampler.schedules if sampler else ()
    overrides = dict(choice.kwargs)
    # A sigma flag left on in the base config (a model shipping Karras, say) would otherwise survive the
    # switch, or clash with the chosen flag ("only one of use_*_sigmas"). A flag is accepted by the class
    # exactly when its schedule is in the entry's list.
    for sched, flag in SIGMA_FLAGS.items():
        if sched in supported and base_config.get(flag) and flag not in overrides:
            overrides[flag] = False
    return overrides


def build(choice: SchedulerChoice, base_config: Mapping[str, Any]) -> Any:
    """Instantiate the chosen scheduler from the model's scheduler config (diffusers imported here)."""
    import diffusers

    cls = getattr(diffusers, choice.cls)  # LMS and the Beta schedule need scipy: a dependency of sdcli
    return cls.from_config(dict(base_config), **config_overrides(choice, base_config))


def _pick_dpm_multistep(config: Mapping[str, Any]) -> str:
    if config.get("algorithm_type") not in ("sde-dpmsolver++", "sde-dpmsolver"):
        return "DPM++ 2M"
    if config.get("solver_order") == 3:
        return "DPM++ 3M SDE"
    if config.get("solver_type") == "heun":
        return "DPM++ 2M SDE Heun"
    return "DPM++ 2M SDE"


def describe(class_name: str, config: Mapping[str, Any]) -> tuple[str, str | None]:
    """Name the sampler and schedule type a scheduler actually used (the inverse of resolve + build)."""
    entries = [s for s in SAMPLERS if s.cls == class_name]
    if not entries:
        return class_name, None
    sampler = entries[0]
    if class_name == "DPMSolverMultistepScheduler":
        wanted = _pick_dpm_multistep(config)
        sampler = next(s for s in entries if s.name == wanted)
    for sched, flag in SIGMA_FLAGS.items():
        if config.get(flag):
            return sampler.name, sched
    if SGM_UNIFORM in sampler.schedules and config.get("timestep_spacing") == "trailing":
        return sampler.name, SGM_UNIFORM
    return sampler.name, None


def names() -> list[dict[str, Any]]:
    """One entry per sampler for `sdcli info --schedulers`: name, diffusers class, schedule types."""
    return [{"name": s.name, "class": s.cls, "schedules": list(s.schedules)} for s in SAMPLERS]


_NON_FINITE = {"Infinity": float("inf"), "-Infinity": float("-inf"), "NaN": float("nan")}


def storable(value: Any) -> Any:
    """A scheduler config value as strict JSON can hold it: diffusers' own defaults include -inf
    (DPMSolverMultistep's lambda_min_clipped), which json.dumps would write as a bare -Infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    return value


def restored(value: Any) -> Any:
    """The inverse of `storable`, for a config read back from an image."""
    if isinstance(value, str):
        return _NON_FINITE.get(value, value)
    if isinstance(value, list):
        return [restored(v) for v in value]
    return value


def check_names(scheduler: str | None, schedule: str | None) -> None:
    """Refuse an unknown --scheduler or --schedule before any model loads (no diffusers import). With a
    --schedule alone, whether the model's own sampler takes it is known only once the model is loaded."""
    if scheduler is not None:
        resolve(scheduler, schedule)
    elif schedule is not None and _norm(schedule) not in (*DEFAULT_SCHEDULE_NAMES, *_SCHEDULE_BY_KEY):
        raise _unknown("schedule type", schedule, [*ALL_SCHEDULES, "Automatic"])


def from_state(class_name: str, config: Mapping[str, Any]) -> Any:
    """Rebuild the exact scheduler an image recorded (class name and full config); a record that cannot be
    rebuilt, or whose scheduler cannot even set its timesteps, is a usage error (the image is bad input)."""
    import copy

    import diffusers

    cls = getattr(diffusers, class_name, None) if class_name.isidentifier() else None
    if cls is None or not class_name.endswith("Scheduler"):
        raise UsageError(f"the image's scheduler {class_name!r} is not one this diffusers provides")
    hint = "pass --scheduler to choose one instead of the image's"
    try:
        scheduler = cls.from_config({key: restored(value) for key, value in dict(config).items()})
        trial = copy.deepcopy(scheduler)  # what every image will ask of it, tried now
        # Flow-matching schedulers with dynamic shifting (FLUX.1) take the shift from the pipeline, per size.
        shift = {"mu": 1.0} if getattr(trial.config, "use_dynamic_shifting", False) else {}
        trial.set_timesteps(2, **shift)
    except Exception as exc:
        raise UsageError(
            f"the image's stored {class_name} config is not usable ({type(exc).__name__}: "
            f"{first_line(exc)[:200]})",
            hint=hint,
        ) from exc
    return scheduler
