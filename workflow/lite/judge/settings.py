"""Settings of the API judges, the API key of the Claude judge, and the config checks that need
no secret.

``JudgeSettings`` holds what every API judge is set with, ``ClaudeSettings`` Claude's own (the
second judge's are in ``lite.judge.openai_compat``). A leaf of the judge package (it imports
nothing of it) and light (no SDK): the Snakefile checks the settings while parsing, and
:func:`lite.judge.run.check_claude_ready` adds the key and the endpoint when a run that judges
starts (before its first job).

Sampling: API version 2026-10-21 (what anthropic 2.x sends) has no ``temperature``, ``top_p`` or
``top_k``; the API answers 400 to any of them. So by default nothing is sent and repeatability
comes from the cache. ``sampling: temperature0`` sends ``temperature: 0`` (the paper's setting)
in the request body with an older API version (2023-06-01 unless ``api_version`` says
otherwise), for models that still accept it.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from typing import ClassVar, Self

from lite.flags import flag_args, setting
from lite.io import InputError, SetupError

# What each sampling option adds to the request body.
SAMPLING: dict[str, dict] = {"none": {}, "temperature0": {"temperature": 0}}
# The first API version without sampling parameters, and the version temperature0 falls back to.
NO_SAMPLING_SINCE = "2026-10-21"
LEGACY_API_VERSION = "2023-06-01"
KEY_ENV = "ANTHROPIC_API_KEY"


class JudgeSetupError(SetupError, RuntimeError):
    """The Claude judge cannot run as configured (missing key, bad settings)."""


class JudgeUnavailable(JudgeSetupError):
    """The API cannot be used: its endpoint does not answer, or it rejected the key."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class JudgeSettings:
    """What every API judge is set with; each judge's class adds its own settings."""

    SECTION: ClassVar[str]  # its config section, named in error messages

    model: str = setting(help="model id as the endpoint names it; recorded in every judgment")
    max_tokens: int = setting(512, help="reply budget; the scores come first, the explanation after")
    # the paper's wording; the two judges see the same text unless configured otherwise
    prompt: str = setting("appendix-a-v1", help="a prompt file under lite/judge/prompts/")
    concurrency: int = setting(4, help="parallel requests")
    max_retries: int = setting(5, help="retries per call (429, 5xx, timeouts, dropped connections)")
    timeout_s: float = setting(120.0, help="seconds per attempt; a 512-token reply takes well under a minute")
    cache_dir: str = setting("results/judge_cache", help="one file per paid call; shared by every pair")

    def __post_init__(self):
        if not isinstance(self.model, str) or not self.model.strip():
            raise InputError(f"{self.SECTION} field 'model': must be a non-empty model id")
        for name in ("max_tokens", "concurrency"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{self.SECTION} field {name!r}: must be a positive integer, got {value!r}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise InputError(f"{self.SECTION} field 'max_retries': must be >= 0, got {self.max_retries!r}")
        self.check_positive("timeout_s")

    def check_positive(self, name: str) -> None:
        value = getattr(self, name)
        if not isinstance(value, (int, float)) or value <= 0:
            raise InputError(f"{self.SECTION} field {name!r}: must be a positive number, got {value!r}")

    @classmethod
    def from_config(cls, section: dict | None) -> Self:
        """From the judge's config mapping; unknown keys are errors, not ignored."""
        section = dict(section or {})
        fields = dataclasses.fields(cls)
        known = {f.name for f in fields}
        unknown = sorted(set(section) - known)
        if unknown:
            raise InputError(
                f"{cls.SECTION}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        missing = [f.name for f in fields if f.default is dataclasses.MISSING and f.name not in section]
        if missing:
            raise InputError(f"{cls.SECTION}: missing field(s) {', '.join(missing)}")
        return cls(**section)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClaudeSettings(JudgeSettings):
    """The paper's judge: Claude through the Messages API (config section ``judge.claude``)."""

    SECTION = "judge.claude"

    # Any Messages API model id. (claude-sonnet-4-5 reaches end of life on 2026-11-30 per
    # anthropic 2.14's deprecation table.)
    model: str = setting("claude-sonnet-5-5", help="Messages API model id; recorded in every judgment")
    sampling: str = setting(
        "none",
        help="none: send no sampling parameter; temperature0: send temperature 0 with an older API version",
        choices=SAMPLING,
    )
    batches: bool = setting(False, help="Message Batches API: half price, results within 24 h")
    poll_interval_s: float = setting(30.0, help="batches: seconds between status checks")
    api_version: str | None = setting(
        None, help="anthropic-version header (default: the SDK's, or 2023-06-01 with temperature0)"
    )

    def __post_init__(self):
        super().__post_init__()
        if self.sampling not in SAMPLING:
            raise InputError(
                f"{self.SECTION} field 'sampling': {self.sampling!r}; choose from {', '.join(SAMPLING)}"
            )
        if self.api_version is not None and (
            not isinstance(self.api_version, str) or len(self.api_version) != 10
        ):
            raise InputError(
                f"{self.SECTION} field 'api_version': expected YYYY-MM-DD, got {self.api_version!r}"
            )
        if self.sampling == "temperature0" and self.request_api_version() >= NO_SAMPLING_SINCE:
            raise InputError(
                f"{self.SECTION} field 'sampling': temperature0 needs an API version before "
                f"{NO_SAMPLING_SINCE} (the API rejects temperature from then on); "
                f"set api_version: {LEGACY_API_VERSION} or sampling: none"
            )
        self.check_positive("poll_interval_s")

    def request_api_version(self) -> str:
        """The version to send explicitly; NO_SAMPLING_SINCE stands for "the SDK's own"."""
        if self.api_version is not None:
            return self.api_version
        return LEGACY_API_VERSION if self.sampling == "temperature0" else NO_SAMPLING_SINCE

    @property
    def sampling_params(self) -> dict:
        return dict(SAMPLING[self.sampling])


def missing_key(variable: str) -> str | None:
    """Why the environment variable ``variable`` holds no key ("is not set", "is set but empty", ...),
    or None when it holds one. A variable exported empty is a different slip from a missing one."""
    value = os.environ.get(variable)
    if value is None:
        return "is not set"
    if not value:
        return "is set but empty"
    if not value.strip():
        return "holds only whitespace"
    return None


def api_key_from_env() -> str:
    """The key, from ANTHROPIC_API_KEY only; the error says how to set it and never echoes a value."""
    problem = missing_key(KEY_ENV)
    if problem is not None:
        raise JudgeSetupError(
            f"judge: claude needs an Anthropic API key in the environment variable {KEY_ENV}, "
            f"which {problem}. Create a key at https://console.anthropic.com/settings/keys and run "
            f"`export {KEY_ENV}=<your key>` in the shell that starts the workflow (SLURM jobs inherit "
            "it), or set judge.name: reference to judge offline. A gateway or a local server can "
            "stand in for the API via ANTHROPIC_BASE_URL."
        )
    return os.environ[KEY_ENV].strip()


def judge_name(config: dict) -> str:
    """``judge.name`` of a workflow config (``judge`` may also be given as a bare name)."""
    judge = config.get("judge", "reference")
    if isinstance(judge, str):
        return judge
    return judge.get("name", "reference")


# What `judge.name` may say: the judges of the workflow's `judge` rule (an OpenAI-compatible
# endpoint is only ever the second judge of Table 5, with a rule of its own).
WORKFLOW_JUDGES = ("reference", "claude")


def check_judge_config(config: dict) -> ClaudeSettings | None:
    """Raise on bad judge settings (no secret needed, so a dry run checks them too).

    Returns the Claude settings when ``judge.name`` is ``claude``, else None (nothing to check).
    """
    name = judge_name(config)
    if name not in WORKFLOW_JUDGES:
        raise InputError(f"config field 'judge.name': {name!r}; choose from {', '.join(WORKFLOW_JUDGES)}")
    if name != "claude":
        return None
    judge = config.get("judge")
    return ClaudeSettings.from_config(judge.get("claude") if isinstance(judge, dict) else None)


def judge_cli_args(config: dict) -> str:
    """The ``lite judge`` flags for a workflow config's judge section (shell-quoted), for the rule.

    ``--judge reference`` for the offline judge; for Claude every setting as a flag, so the rule's
    command line (and Snakemake's params) show exactly what the judge ran with.
    """
    name = judge_name(config)
    if name != "claude":
        return f"--judge {shlex.quote(name)}"
    judge = config.get("judge")
    settings = ClaudeSettings.from_config(judge.get("claude") if isinstance(judge, dict) else None)
    return f"--judge claude {flag_args(dataclasses.asdict(settings))}"
