"""The embedded default's data: seeded instruction-following tasks with exactly checkable answers.

    lite prepare-train --source synthetic --n 20000 --seed 0 --out results/data/train.jsonl
    lite prepare-eval --source synthetic --name vicuna --n 80 --seed 1 --out results/data/eval/vicuna.jsonl

Sixteen task families, each with a few phrasings and three difficulty levels. The embedded
default (config.yaml, ``data.families``) uses the six ``country_*`` families of ``lite.world``,
which ask about facts of a synthetic world the base model learnt in pretraining (level = how
popular the country is; tuning asks about two thirds of the countries, held-out sets about the rest),
and ``cycle``, whose long answers (8-20 days or months in order) the latency benchmark decodes.
The older families work over a closed vocabulary of 48 short words and the numbers 0-99 (count,
repeat, reverse, span, extreme, shift) or over small lookup tables a model learns during tuning
alone (capital, after, opposite); a tiny model trained from scratch on them answers every token
from its first layers, which is why the default no longer uses them.

Train and held-out prompts never coincide: every prompt (instruction + input) is hashed into one
of 16 buckets; train uses 14 of them, the calibration split one and the four eval sets the last,
so no eval or calibration prompt occurs verbatim in any train set, whatever the seeds.

The four eval sets play the roles of the paper's four (Table 4) and keep their names so the
workflow's wildcards and per-category figures work unchanged; ``category`` is the task family
and ``reference`` the gold answer. Each asks its own categories (``SplitRole.categories``) at its
own difficulty, as the paper's four differ:
  vicuna       general questions, even difficulty         (Vicuna: general questions)
  koala        short questions, mostly popular countries  (Koala: short real user queries)
  wizardlm     complex and two-hop questions, rare ones   (WizardLM: evolved, complex instructions)
  selfinstruct mostly instruction + separate input        (Self-Instruct: 208 of 252 have an input)
  calibration  the train mix; for choosing exit thresholds, never for reporting
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lite.datasets import eval_record
from lite.world import WORLD_TASKS

# 48 short, common words, each one BPE token. Why so few: with 364 words a tiny LLaMA (8 layers,
# hidden 128, 900 steps of 32) learned no copying at all (repeat, reverse: 0 % exact match); with a
# closed list this small it learns to copy within a few minutes. The cost is a smaller BPE
# vocabulary (~850 tokens instead of the ~1.3k that would match LLaMA-2-7B's head/layer ratio).
WORDS: tuple[str, ...] = (
    "cat", "dog", "fox", "owl", "bee", "cow", "pig", "hen", "ant", "bat", "sun", "moon",
    "star", "tree", "car", "box", "cup", "hat", "pen", "key", "map", "book", "ship", "lamp",
    "door", "bell", "red", "blue", "green", "pink", "gold", "gray", "apple", "pear", "plum", "rice",
    "cake", "milk", "tea", "egg", "rain", "snow", "wind", "fire", "rock", "sand", "leaf", "rose",
)  # fmt: skip
NUMBER_WORDS: dict[int, str] = {2: "two", 3: "three", 4: "four", 5: "five"}

LEVELS = (0, 1, 2)  # easy, medium, hard

# Hash buckets of a prompt: the split it may appear in (see the module docstring).
N_BUCKETS = 16
CALIB_BUCKET = 14
EVAL_BUCKET = 15

# A generator draws one task of its family: (rng, level, with_input) -> (instruction, input, output).
Generator = Callable[[random.Random, int, bool], tuple[str, str, str]]


@dataclass(frozen=True)
class Family:
    name: str
    generate: Generator
    what: str  # one line for the docs and the report
    # World families (lite.world) also take whether the prompt is for tuning: tuning asks only
    # about the tuned countries, held-out sets about any.
    world: bool = False


def _words(rng: random.Random, n: int) -> list[str]:
    # Distinct words, so "reverse" and "count" have one unambiguous answer.
    return rng.sample(WORDS, n)


def _numbers(rng: random.Random, n: int, low: int = 0, high: int = 99) -> list[int]:
    return rng.sample(range(low, high + 1), n)


def _join(items: Sequence) -> str:
    return " ".join(str(item) for item in items)


def _phrase(rng: random.Random, with_input: bool, inline: Sequence[str], separate: Sequence[str], **values):
    """Pick a phrasing: the data inside the instruction, or a bare instruction plus an input."""
    if with_input:
        return rng.choice(separate).format(**values)
    return rng.choice(inline).format(**values)


def _count(rng: random.Random, level: int, with_input: bool) -> tuple[str, str, str]:
    n = rng.choice(((2, 3), (4, 5), (6, 7))[level])
    data = _join(_words(rng, n))
    inline = (
        "How many words are in: {x}",
        "Count the words: {x}",
        "How many words? {x}",
        "Number of words in: {x}",
        "Tell me how many words: {x}",
    )
    separate = (
        "Count the words.",
        "How many words are there?",
        "How many words does the input have?",
        "Give the number of words.",
    )
    instruction = _phrase(rng, with_input, inline, separate, x=data)
    return instruction, data if with_input else "", str(n)


def _repeat(rng: random.Random, level: int, with_input: bool) -> tuple[str, str, str]:
    k = rng.choice(((2,), (3,), (4, 5))[level])
    word = rng.choice(WORDS)
    # Half the counts are spelt out, so the model must map "three" and "3" to the same length.
    times = NUMBER_WORDS[k] if rng.random() < 0.5 else str(k)
    inline = (
        "Repeat {w} {k} times.",
        "Say {w} {k} times.",
        "Write the word {w} {k} times.",
        "Write {w} {k} times.",
        "Echo {w} {k} times.",
    )
    separate = (
        "Repeat the word {k} times.",
        "Write the input {k} times.",
        "Say it {k} times.",
        "Echo the word {k} times.",
    )
    instruction = _phrase(rng, with_input, inline, separate, w=word, k=times)
    return instruction, word if with_input else "", _join([word] * k)


def _reverse(rng: random.Random, level: int, with_input: bool) -> tuple[str, str, str]:
    words = _words(rng, (2, 3, 4)[level])
    data = _join(words)
    inline = (
        "Reverse: {x}",
        "Reverse the words: {x}",
        "Write backwards: {x}",
        "Put in reverse order: {x}",
        "Reverse the order of {x}",
    )
    separate = (
        "Reverse the words.",
        "Write the words backwards.",
        "Reverse the word order.",
        "Put the words in reverse order.",
    )
    instruction = _phrase(rng, with_input, inline, separate, x=data)
    return instruction, data if with_input else "", _join(reversed(words))


def _span(rng: random.Random, level: int, with_input: bool) -> tuple[str, str, str]:
    length = rng.choice(((2, 3), (4,), (5, 6))[level])
    start = rng.randint(0, 99 - length + 1)
    numbers = list(range(start, start + length))
    # Counting down is rarer, so it is the harder direction for the model.
    if rng.random() < 0.3:
        numbers.reverse()
    first, last = numbers[0], numbers[-1]
    inline = (
        "Count from {a} to {b}.",
        "List the numbers from {a} to {b}.",
        "Write the numbers {a} to {b}.",
        "Go from {a} to {b}.",
        "Count {a} to {b}.",
    )
    separate = (
        "Count from the first number to the second.",
        "List the numbers from the first to the second.",
        "Fill in the numbers between these two.",
        "Write every number from one to the other.",
    )
    instruction = _phrase(rng, with_input, inline, separate, a=first, b=last)
    return instruction, f"{first} {last}" if with_input else "", _join(numbers)


def _extreme(rng: random.Random, level: int, with_input: bool) -> tuple[str, str, str]:
    numbers = _numbers(rng, rng.choice(((2,), (3, 4), (5,))[level]))
    data = _join(numbers)
    if rng.random() < 0.5:
        inline = (
            "Which is largest: {x}",
            "What is the biggest number in {x}",
            "Largest of {x}?",
            "Find the maximum: {x}",
            "Give the highest number: {x}",
        )
        separate = ("Give the largest number.", "Which number is the biggest?", "Find the maximum.")
        answer = max(numbers)
    else:
        inline = (
            "Which is smallest: {x}",
            "What is the lowest number in {x}",
            "Smallest of {x}?",
            "Find the minimum: {x}",
            "Give the least number: {x}",
        )
        separate = ("Give the smallest number.", "Which number is the lowest?", "Find the minimum.")
        answer = min(numbers)
    instruction = _phrase(rng, with_input, inline, separate, x=data)
    return instruction, data if with_input else "", str(answer)


def _shift(rng: random.Random, level: int, with_input: bool) -> tuple[str, str, str]:
    n = rng.choice(((1, 2), (3,), (4,))[level])
    if rng.random() < 0.5:
        step, numbers = 1, _numbers(rng, n, 0, 98)
        inline = (
            "Add one to each: {x}",
            "Increase each number by 1: {x}",
            "Add 1 to every number: {x}",
            "Plus one each: {x}",
        )
        separate = ("Add one to each number.", "Increase every number by 1.", "Add 1 to each.")
    else:
        step, numbers = -1, _numbers(rng, n, 1, 99)
        inline = (
            "Subtract one from each: {x}",
            "Decrease each number by 1: {x}",
            "Take 1 from every number: {x}",
            "Minus one each: {x}",
        )
        separate = ("Subtract one from each number.", "Decrease every number by 1.", "Take 1 from each.")
    data = _join(numbers)
    instruction = _phrase(rng, with_input, inline, separate, x=data)
    return instruction, data if with_input else "", _join(number + step for number in numbers)


# Lookup families: the answer is recalled, not copied. A tiny LLaMA learns such tables within a
# few hundred steps (copying needs induction heads, which appear late), and their multi-token
# answers ("Tuesday Wednesday Thursday") have hard first tokens and easy continuations: the
# per-token difference that early exit lives on.
CAPITALS: tuple[tuple[tuple[str, str], ...], ...] = (
    (
        ("France", "Paris"),
        ("Italy", "Rome"),
        ("Spain", "Madrid"),
        ("Germany", "Berlin"),
        ("Japan", "Tokyo"),
        ("China", "Beijing"),
        ("Egypt", "Cairo"),
        ("Russia", "Moscow"),
        ("Greece", "Athens"),
        ("Ireland", "Dublin"),
    ),
    (
        ("Norway", "Oslo"),
        ("Sweden", "Stockholm"),
        ("Poland", "Warsaw"),
        ("Austria", "Vienna"),
        ("Canada", "Ottawa"),
        ("Portugal", "Lisbon"),
        ("Turkey", "Ankara"),
        ("Peru", "Lima"),
        ("Cuba", "Havana"),
        ("Kenya", "Nairobi"),
    ),
    (
        ("India", "New Delhi"),
        ("Mexico", "Mexico City"),
        ("Argentina", "Buenos Aires"),
        ("Australia", "Canberra"),
        ("Finland", "Helsinki"),
        ("Denmark", "Copenhagen"),
        ("Hungary", "Budapest"),
        ("Thailand", "Bangkok"),
        ("Vietnam", "Hanoi"),
        ("Chile", "Santiago"),
    ),
)  # fmt: skip  (tiers: easy, medium, hard)
SEQUENCES: dict[str, tuple[tuple[str, ...], bool]] = {  # kind -> (items, wraps around)
    "day": (("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"), True),
    "month": (("January", "February", "March", "April", "May", "June", "July", "August",
               "September", "October", "November", "December"), True),
    "letter": (tuple("abcdefghijklmnopqrstuvwxyz"), False),
}  # fmt: skip
OPPOSITES: tuple[tuple[tuple[str, str], ...], ...] = (
    (("hot", "cold"), ("big", "small"), ("up", "down"), ("yes", "no"), ("good", "bad"),
     ("day", "night"), ("fast", "slow"), ("old", "new")),
    (("happy", "sad"), ("light", "dark"), ("open", "closed"), ("early", "late"), ("high", "low"),
     ("full", "empty"), ("hard", "soft"), ("wet", "dry")),
    (("strong", "weak"), ("rich", "poor"), ("loud", "quiet"), ("thick", "thin"), ("cheap", "expensive"),
     ("safe", "dangerous"), ("first", "last"), ("inside", "outside")),
)  # fmt: skip


def _capital(rng: random.Random, level: int, with_input: bool) -> tuple[str, str, str]:
    country, city = rng.choice(CAPITALS[level])
    inline = (
        "What is the capital of {c}?",
        "Name the capital of {c}.",
        "Capital of {c}?",
        "Which city is the capital of {c}?",
        "Tell me the capital city of {c}.",
    )
    separate = ("What is the capital of this country?", "Name its capital.", "Give the capital city.")
    instruction = _phrase(rng, with_input, inline, separate, c=country)
    return instruction, country if with_input else "", city


def _after(rng: random.Random, level: int, with_input: bool) -> tuple[str, str, str]:
    k = rng.choice(((1,), (2,), (3, 4))[level])
    kind = rng.choice(tuple(SEQUENCES))
    items, wraps = SEQUENCES[kind]
    start = rng.randrange(len(items) if wraps else len(items) - k)
    following = [items[(start + i) % len(items)] for i in range(1, k + 1)]
    count = NUMBER_WORDS[k] if k > 1 and rng.random() < 0.5 else str(k)
    if k == 1:
        inline = ("What comes after {x}?", "Which {kind} follows {x}?", "Name the {kind} after {x}.")
        separate = ("What comes next?", "Which one follows?", "Name the next one.")
    else:
        inline = (
            "Name the {k} {kind}s after {x}.",
            "List the next {k} {kind}s after {x}.",
            "What are the {k} {kind}s that follow {x}?",
        )
        separate = ("List the next {k} {kind}s.", "Name the {k} that follow.", "What are the next {k}?")
    instruction = _phrase(rng, with_input, inline, separate, x=items[start], kind=kind, k=count)
    return instruction, items[start] if with_input else "", _join(following)


def _cycle(rng: random.Random, level: int, with_input: bool) -> tuple[str, str, str]:
    # The long-answer family: 8-20 days or months in order from a given one, round the week or
    # year as often as needed. The first item is copied from the prompt and the length must be
    # counted; every other token follows from the one before, which is what early layers (and
    # speculative drafts) get right and what the latency benchmark's long responses are made of.
    k = rng.choice(((8, 10), (12, 14), (16, 20))[level])
    kind = rng.choice(("day", "month"))
    items, _ = SEQUENCES[kind]
    start = rng.randrange(len(items))
    inline = (
        "Recite {k} {kind}s in order, starting with {x}.",
        "List {k} {kind}s in a row, beginning at {x}.",
        "Starting from {x}, name {k} {kind}s in order.",
    )
    separate = (
        "Recite {k} {kind}s in order, starting with this one.",
        "List {k} {kind}s in a row, beginning here.",
    )
    instruction = _phrase(rng, with_input, inline, separate, x=items[start], kind=kind, k=k)
    # The answer names the start item mid-sentence before listing: a response's first token has no
    # leading space (`Sunday`), a different token from the prompt's (` Sunday`), so an answer that
    # opened with the item could not copy it, and tiny models collapsed to one fixed start.
    listed = _join(items[(start + i) % len(items)] for i in range(k))
    answer = f"The {k} {kind}s from {items[start]} are {listed}."
    return instruction, items[start] if with_input else "", answer


def _opposite(rng: random.Random, level: int, with_input: bool) -> tuple[str, str, str]:
    pair = rng.choice(OPPOSITES[level])
    word, answer = pair if rng.random() < 0.5 else pair[::-1]
    inline = (
        "What is the opposite of {w}?",
        "Give the opposite of {w}.",
        "Opposite of {w}?",
        "Name the antonym of {w}.",
        "Which word means the opposite of {w}?",
    )
    separate = ("Give the opposite of this word.", "What is its opposite?", "Name the antonym.")
    instruction = _phrase(rng, with_input, inline, separate, w=word)
    return instruction, word if with_input else "", answer


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("count", _count, "how many words in a list of 2-7 (answer: one number)"),
        Family("repeat", _repeat, "a word repeated 2-5 times, count as digit or word"),
        Family("reverse", _reverse, "a list of 2-4 words in reverse order"),
        Family("span", _span, "count up (70 %) or down from a to b, 2-6 numbers"),
        Family("extreme", _extreme, "largest or smallest of 2-5 numbers 0-99 (one number)"),
        Family("shift", _shift, "add or subtract one to each of 1-4 numbers"),
        Family("capital", _capital, "the capital of one of 30 countries (1-2 words)"),
        Family("after", _after, "the next 1-4 days, months or letters after a given one"),
        Family("opposite", _opposite, "the opposite of one of 48 common words"),
        Family("cycle", _cycle, "8-20 days or months in order from a given one (long answers)"),
        *(Family(name, task, what, world=True) for name, (task, what) in WORLD_TASKS.items()),
    )
}


@dataclass(frozen=True)
class SplitRole:
    """How one split is drawn: which bucket, the mix of difficulty levels, the share with an input."""

    bucket: str  # "train", "calib" or "eval": the hash region its prompts come from
    levels: tuple[float, float, float]  # weights of easy / medium / hard
    input_share: float  # fraction of prompts with the data in a separate input field
    paper_size: int | None  # size of the paper set it mirrors (Table 4), None for train / calib
    role: str
    # The families this set asks from, where configured (sets differ in their categories, as the
    # paper's four do); None or no overlap with the configured families: all configured ones.
    # Every eval set of the default has both long-answer families (country_profile: three facts,
    # cycle: 8-20 items): the paper's answers run to hundreds of tokens, and a baseline's forced
    # early exits cost most where answers are long (measured: sequential exit lost 0.06 points on
    # country_capital's one-fact answers, 0.7-0.9 on these two).
    categories: tuple[str, ...] | None = None


TRAIN_ROLE = SplitRole("train", (1, 1, 1), 0.3, None, "instruction tuning")
EVAL_SETS: dict[str, SplitRole] = {
    "vicuna": SplitRole(
        "eval", (1, 1, 1), 0.2, 80, "Vicuna mirror: general questions, even difficulty",
        ("country_capital", "country_language", "country_profile", "country_two_hop", "cycle"),
    ),
    "koala": SplitRole(
        "eval", (0.5, 0.35, 0.15), 0.2, 180, "Koala mirror: short questions, mostly popular countries",
        ("country_profile", "country_language", "country_east", "cycle"),
    ),
    "wizardlm": SplitRole(
        "eval", (0.15, 0.35, 0.5), 0.2, 218, "WizardLM mirror: complex questions, mostly rare countries",
        ("country_profile", "country_two_hop", "country_capitals", "cycle"),
    ),
    "selfinstruct": SplitRole(
        "eval", (1, 1, 1), 0.8, 252, "Self-Instruct mirror: mostly with an input",
        ("country_capital", "country_language", "country_east", "country_profile", "cycle"),
    ),
    "calibration": SplitRole("calib", (1, 1, 1), 0.3, None, "calibration split for exit thresholds"),
}  # fmt: skip

# Sizes of the embedded default (config.yaml): the paper's 80/180/218/252 scaled by 0.5, so CPU
# decoding takes minutes.
DEFAULT_SIZES: dict[str, int] = {
    "train": 12000, "vicuna": 40, "koala": 90, "wizardlm": 109, "selfinstruct": 126, "calibration": 200,
}  # fmt: skip


@dataclass(frozen=True)
class SyntheticSpec:
    """The synthetic data of one experiment; checked on construction."""

    # Task families to draw from (keys of FAMILIES); fewer families give an easier set.
    families: tuple[str, ...] = tuple(FAMILIES)
    # Records per split: "train" and any of EVAL_SETS ("calibration" included).
    sizes: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_SIZES))
    # Base seed; each split derives its own stream from (split name, seed).
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.families, str) or not isinstance(self.families, Sequence):
            raise ValueError(f"SyntheticSpec.families: expected a list of names, got {self.families!r}")
        object.__setattr__(self, "families", tuple(self.families))
        if not self.families:
            raise ValueError("SyntheticSpec.families: empty; choose from " + ", ".join(FAMILIES))
        for name in self.families:
            if name not in FAMILIES:
                raise ValueError(
                    f"SyntheticSpec.families: unknown family {name!r}; choose from {', '.join(FAMILIES)}"
                )
        if len(set(self.families)) != len(self.families):
            raise ValueError(f"SyntheticSpec.families: duplicate names in {list(self.families)}")
        if not isinstance(self.sizes, dict):
            raise ValueError(f"SyntheticSpec.sizes: expected a mapping split -> count, got {self.sizes!r}")
        for split, size in self.sizes.items():
            if split != "train" and split not in EVAL_SETS:
                raise ValueError(
                    f"SyntheticSpec.sizes: unknown split {split!r}; choose from train, {', '.join(EVAL_SETS)}"
                )
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise ValueError(f"SyntheticSpec.sizes[{split!r}]: expected an integer >= 1, got {size!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"SyntheticSpec.seed: expected an integer >= 0, got {self.seed!r}")

    def make(self, split: str) -> list[dict]:
        """The records of one split (train records for "train", eval records otherwise)."""
        if split not in self.sizes:
            raise ValueError(f"SyntheticSpec.sizes: no size for split {split!r}")
        if split == "train":
            return make_train(self.sizes[split], self.seed, self.families)
        return make_eval(split, self.sizes[split], self.seed, self.families)


def prompt_key(instruction: str, text_input: str) -> str:
    """The text that decides whether two prompts are the same (what the model sees)."""
    return f"{instruction}\n\x1f{text_input}"


def bucket_of(instruction: str, text_input: str) -> str:
    """Which split a prompt belongs to: "train", "calib" or "eval" (a stable hash, not Python's)."""
    digest = hashlib.blake2b(prompt_key(instruction, text_input).encode(), digest_size=8).digest()
    bucket = int.from_bytes(digest, "big") % N_BUCKETS
    if bucket == EVAL_BUCKET:
        return "eval"
    if bucket == CALIB_BUCKET:
        return "calib"
    return "train"


def make_train(n: int, seed: int, families: Sequence[str] | None = None) -> list[dict]:
    """``n`` Alpaca-format train records ({instruction, input, output}); families are balanced."""
    drawn = _draw(TRAIN_ROLE, n, random.Random(f"train:{seed}"), _check_families(families), unique=False)
    return [{"instruction": inst, "input": inp, "output": out} for _, inst, inp, out in drawn]


def make_eval(name: str, n: int, seed: int, families: Sequence[str] | None = None) -> list[dict]:
    """``n`` eval records of set ``name`` (a key of EVAL_SETS), category = family, reference = gold.

    Prompts are distinct within a set as far as the family's held-out prompts allow.
    """
    if name not in EVAL_SETS:
        raise ValueError(f"unknown synthetic eval set {name!r}; choose from {', '.join(EVAL_SETS)}")
    drawn = _draw(EVAL_SETS[name], n, random.Random(f"{name}:{seed}"), _check_families(families), unique=True)
    return [
        eval_record(f"syn-{name}_{index}", inst, inp, family, out)
        for index, (family, inst, inp, out) in enumerate(drawn)
    ]


def overlap(train: Sequence[dict], held_out: Sequence[dict]) -> float:
    """Share of ``held_out`` records whose prompt occurs verbatim in ``train`` (0..1)."""
    if not held_out:
        return 0.0
    seen = {prompt_key(r["instruction"], r["input"]) for r in train}
    return sum(prompt_key(r["instruction"], r["input"]) in seen for r in held_out) / len(held_out)


# A family's held-out region can be small (e.g. "repeat" has ~2k prompts in all, ~1/16 of them
# held out); after this many draws a set accepts a repeated prompt rather than loop for ever.
_MAX_DRAWS = 400


def _draw(
    role: SplitRole, n: int, rng: random.Random, families: tuple[str, ...], unique: bool
) -> list[tuple[str, str, str, str]]:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    asked = [f for f in families if role.categories is None or f in role.categories] or list(families)
    # Balanced families (each n // F or one more), in a seeded random order.
    order = [asked[i % len(asked)] for i in range(n)]
    rng.shuffle(order)
    seen: set[str] = set()
    drawn = []
    for family_name in order:
        family = FAMILIES[family_name]
        candidate = None
        for _ in range(_MAX_DRAWS):
            level = rng.choices(LEVELS, weights=role.levels)[0]
            with_input = rng.random() < role.input_share
            if family.world:
                instruction, text_input, output = family.generate(
                    rng, level, with_input, role.bucket == "train"
                )
            else:
                instruction, text_input, output = family.generate(rng, level, with_input)
            if bucket_of(instruction, text_input) != role.bucket:
                continue
            candidate = (instruction, text_input, output)
            if not unique or prompt_key(instruction, text_input) not in seen:
                break
        if candidate is None:  # pragma: no cover - a draw lands in the bucket with p >= 1/16
            raise RuntimeError(f"no {role.bucket} prompt for family {family_name!r} in {_MAX_DRAWS} draws")
        instruction, text_input, output = candidate
        key = prompt_key(instruction, text_input)
        seen.add(key)
        drawn.append((family_name, instruction, text_input, output))
    return drawn


def _check_families(families: Sequence[str] | None) -> tuple[str, ...]:
    if families is None:
        return tuple(FAMILIES)
    return SyntheticSpec(families=tuple(families), sizes={"train": 1}).families


def describe() -> dict:
    """A JSON-able summary of the families and split roles (saved beside prepared data)."""
    return {
        "families": {name: family.what for name, family in FAMILIES.items()},
        "splits": {
            "train": dataclasses.asdict(TRAIN_ROLE),
            **{k: dataclasses.asdict(v) for k, v in EVAL_SETS.items()},
        },
        "buckets": {"n": N_BUCKETS, "calib": CALIB_BUCKET, "eval": EVAL_BUCKET},
    }
