"""The config's ``human`` section: which model, eval set and pair of systems people rate.

Every key is optional; the defaults are the paper's Table 5 set-up on this workflow: the main
model, the first eval set (Vicuna's role) and the headline pair, LITE's final layer against its
reported dynamic decoder. Naming ``raters`` puts table5 into the workflow's ``all``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex

from lite.io import InputError

SYSTEM = re.compile(r"^[a-z_]+\.[A-Za-z0-9-]+$")  # "{tuning}.{decoder}", as judge pairs name them
RATER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,39}$")
KNOWN = ("model", "evalset", "systems", "raters", "n")


def check_rater(name: str) -> str:
    """The rater's name, stripped; letters, digits, space, ``_.-``, at most 40 characters."""
    name = " ".join(str(name).split())
    if not RATER.match(name):
        raise InputError(
            f"rater name {name!r}: use 1-40 letters, digits, spaces, '_', '.' or '-', starting with a "
            "letter or digit"
        )
    return name


@dataclasses.dataclass(frozen=True)
class HumanSettings:
    model: str
    evalset: str
    systems: tuple[str, str]  # (A, B): A is the reference side, as in the judge pairs
    raters: tuple[str, ...] = ()
    n: int | None = None  # rate the first n prompts of the eval set (None: all)

    def __post_init__(self):
        if len(self.systems) != 2 or self.systems[0] == self.systems[1]:
            raise InputError(f"human.systems: expected two different systems, got {list(self.systems)}")
        for system in self.systems:
            if not SYSTEM.match(system):
                raise InputError(f"human.systems: {system!r} is not a system name ('tuning.decoder')")
        if self.n is not None and (not isinstance(self.n, int) or self.n < 1):
            raise InputError(f"human.n: must be a positive integer or null, got {self.n!r}")
        names = [check_rater(r) for r in self.raters]
        if len({n.casefold() for n in names}) != len(names):
            raise InputError(f"human.raters: names must differ (case-insensitively), got {names}")
        object.__setattr__(self, "raters", tuple(names))

    @property
    def database(self) -> str:
        return database_path(self.model, self.evalset)

    @property
    def pair_name(self) -> str:
        return f"{self.systems[0]}~{self.systems[1]}"

    @classmethod
    def from_config(cls, config: dict) -> HumanSettings:
        """From a workflow config; unknown keys, models and eval sets are errors naming the key."""
        section = dict(config.get("human") or {})
        unknown = sorted(set(section) - set(KNOWN))
        if unknown:
            raise InputError(f"human: unknown field(s) {', '.join(unknown)}; known: {', '.join(KNOWN)}")
        models = list(config["models"])
        evalsets = list(config["data"]["eval"])
        model = section.get("model", models[0])
        evalset = section.get("evalset", evalsets[0])
        if model not in models:
            raise InputError(f"human.model: {model!r} is not a configured model ({', '.join(models)})")
        if evalset not in evalsets:
            raise InputError(
                f"human.evalset: {evalset!r} is not a configured eval set ({', '.join(evalsets)})"
            )
        dynamic = config.get("report", {}).get("dynamic_decoder", "dynamic-paper")
        systems = tuple(section.get("systems") or ("lite.final", f"lite.{dynamic}"))
        return cls(
            model=model,
            evalset=evalset,
            systems=systems,
            raters=tuple(section.get("raters") or ()),
            n=section.get("n"),
        )


def database_path(model: str, evalset: str) -> str:
    return f"results/{model}/human/{evalset}.sqlite"


# ---- the workflow's table5 rule (workflow/rules/human.smk), on a lite.plan.Plan
def table5_rule_inputs(plan) -> dict[str, str]:
    """The rule's inputs; a missing ratings database is an error that says how to start one."""
    inputs = plan.table5_inputs()
    human = inputs.pop("human")
    if not os.path.exists(inputs["db"]):
        raise InputError(
            f"{inputs['db']}: no ratings yet. Build the two systems' generations, then collect "
            f"ratings with `lite annotate --model {human.model} --evalset {human.evalset} "
            f"--systems {','.join(human.systems)}` (docs/human.md)"
        )
    return inputs


def table5_rule_args(plan) -> str:
    """``--second PATH`` when a second judge is configured, ``--raters`` when raters are named."""
    inputs = plan.table5_inputs()
    args = []
    if "second" in inputs:
        args += ["--second", inputs["second"]]
    if inputs["human"].raters:
        args += ["--raters", ",".join(inputs["human"].raters)]
    return shlex.join(args)
