"""A synthetic world of countries for the embedded default: facts with a popularity, a pretraining
corpus that states them, and instruction tasks that ask about them.

Why a world: the paper tunes LLaMA-2, which learnt its facts in pretraining, and asks questions
whose answers mix easy tokens (phrasing, copies of the question) with tokens that need the model's
stored knowledge. A tiny model trained from scratch on instruction data alone ends with every layer
knowing the same few lookups, so every token exits at the first checkpoint. Here:

- **Popularity.** Countries are ranked; the pretraining corpus mentions the country of rank ``r``
  with weight ``1 / (r + 1) ** ZIPF``, as real text mentions entities. Facts of popular countries
  are learnt early and by every layer; facts of rare ones late and only by the deep layers.
- **Held-out entities.** Instruction tuning asks only about two thirds of the countries
  (``World.tuned``); the others are known from pretraining alone, and they are the ones the eval
  and calibration sets ask about. LITE teaches the early layers to answer about the tuned
  countries; about the rest they are unsure, and the deep layers answer.
- **Composition.** Some questions take two hops (the capital of the country east of X) with no
  intermediate token, so the first answer token needs two lookups in a row.

Together these make the exit layer vary from token to token: phrasing exits at the first
checkpoint, popular facts soon after, rare and two-hop facts late.

Names are made of syllables (``Doravia``, ``Kelmburg``) and split into 1-3 BPE tokens: the first
piece of a name is the hard token, the rest follow from it.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

# Popularity exponent of the corpus. Entity mentions in real text follow Zipf's law with an exponent
# near 1; at 1.1 the top country took 20 % of a 32K-row corpus and countries past rank 120 were
# seen about 10 times, too few for even the final layer to learn them, so early and final layers
# erred alike. At 0.7 the top country takes 6 % and the rarest ~40 rows, still a 50x range.
ZIPF = 0.7
N_COUNTRIES = 300
N_LANGUAGES = 24
WORLD_SEED = 0
# Popularity bands of the eval difficulty levels (easy, medium, hard): rank ranges.
LEVEL_RANKS: tuple[tuple[int, int], ...] = ((0, 30), (30, 120), (120, N_COUNTRIES))

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "tr")
_VOWELS = ("a", "e", "i", "o", "u")
_COUNTRY_ENDS = ("ia", "land", "ora", "istan", "ania", "esh")
_CITY_ENDS = ("burg", "ton", "polis", "grad", "vik", "mont")
_LANGUAGE_ENDS = ("ic", "ese", "ish", "an")

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")  # fmt: skip


@dataclass(frozen=True)
class World:
    """Countries by popularity rank (0 = most mentioned) and their facts, all by country index."""

    countries: tuple[str, ...]
    capitals: tuple[str, ...]
    languages: tuple[str, ...]  # the language names
    language_of: tuple[int, ...]  # country -> index into languages
    east_of: tuple[int, ...]  # country -> the country east of it (a permutation without fixed points)
    tuned: frozenset[int]  # countries instruction tuning asks about

    def weights(self, countries: Sequence[int]) -> list[float]:
        """Corpus popularity of each country in ``countries``."""
        return [1.0 / (c + 1) ** ZIPF for c in countries]


def _name(rng: random.Random, syllables: int, ends: Sequence[str]) -> str:
    stem = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
    end = rng.choice(ends)
    if end[0] in _VOWELS:  # "Bo" + "ia" reads "Bia", not "Boia"
        stem = stem[:-1]
    return (stem + end).capitalize()


def _distinct_names(rng: random.Random, n: int, syllables: Sequence[int], ends, taken: set[str]) -> list[str]:
    names: list[str] = []
    while len(names) < n:
        name = _name(rng, rng.choice(syllables), ends)
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


@cache
def make_world(
    seed: int = WORLD_SEED, n_countries: int = N_COUNTRIES, n_languages: int = N_LANGUAGES
) -> World:
    """The seeded world; the same seed gives the same world on every machine."""
    rng = random.Random(f"world:{seed}")
    taken: set[str] = set()
    countries = _distinct_names(rng, n_countries, (1, 2), _COUNTRY_ENDS, taken)
    capitals = _distinct_names(rng, n_countries, (1, 2), _CITY_ENDS, taken)
    languages = _distinct_names(rng, n_languages, (1, 2), _LANGUAGE_ENDS, taken)
    language_of = [rng.randrange(n_languages) for _ in range(n_countries)]
    # east_of: one random cycle through all countries, so no country is east of itself
    order = list(range(n_countries))
    rng.shuffle(order)
    east_of = [0] * n_countries
    for i, country in enumerate(order):
        east_of[country] = order[(i + 1) % n_countries]
    # Two countries in three are asked about in tuning, spread over every popularity band; the
    # facts of the others only pretraining taught.
    tuned = frozenset(c for c in range(n_countries) if c % 3 != 2)
    return World(
        tuple(countries), tuple(capitals), tuple(languages), tuple(language_of), tuple(east_of), tuned
    )


# ---- the pretraining corpus ----------------------------------------------------------------

# Each fact in both directions, so a question can name either side.
_CAPITAL = ("The capital of {x} is {y}.", "{y} is the capital of {x}.")
_LANGUAGE = ("People in {x} speak {l}.", "{l} is spoken in {x}.")
_EAST = ("East of {x} lies {z}.", "{z} lies east of {x}.")
CALENDAR_SHARE = 0.1  # rows that recite days or months instead (the cycle task's knowledge)


def _facts(world: World, country: int, rng: random.Random) -> list[str]:
    values = facts_of(world, country)
    return [rng.choice(forms).format(**values) for forms in (_CAPITAL, _LANGUAGE, _EAST)]


def make_corpus(n: int, seed: int, world: World | None = None) -> list[dict]:
    """``n`` pretraining rows ``{"text": ...}``: paragraphs about one country each.

    A paragraph states a country's three facts in random order, naming the country in each
    sentence, and half the time goes on with a fact of its eastern neighbour. Naming the country
    again is what teaches a model to copy a name from its context (answers repeat the country
    asked about); a tiny model pretrained on unrelated sentences could not copy the names of
    countries after tuning. Countries are drawn by popularity.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"corpus n: expected an integer >= 1, got {n!r}")
    world = make_world() if world is None else world
    rng = random.Random(f"corpus:{seed}")
    # Drawing by cumulative weights once is ~50x faster than rng.choices with weights per draw.
    ranks = list(range(len(world.countries)))
    cumulative = list(itertools.accumulate(world.weights(ranks)))
    rows = []
    for _ in range(n):
        if rng.random() < CALENDAR_SHARE:
            rows.append({"text": " ".join(_calendar_sentence(rng) for _ in range(2))})
            continue
        country = rng.choices(ranks, cum_weights=cumulative)[0]
        sentences = _facts(world, country, rng)
        rng.shuffle(sentences)
        if rng.random() < 0.5:
            sentences.append(rng.choice(_facts(world, world.east_of[country], rng)[:2]))
        rows.append({"text": " ".join(sentences)})
    return rows


def _calendar_sentence(rng: random.Random) -> str:
    items = DAYS if rng.random() < 0.5 else MONTHS
    start = rng.randrange(len(items))
    return " ".join(items[(start + i) % len(items)] for i in range(rng.randint(3, 7))) + "."


# ---- instruction tasks ---------------------------------------------------------------------


def pick_country(rng: random.Random, level: int, tuning: bool, world: World) -> int:
    """A country to ask about: in tuning a tuned one by popularity; in the eval and calibration
    sets one that tuning never asks about, uniformly within the level's popularity band.

    Held-out sets ask only about held-out countries, as the paper's eval questions are new to its
    tuning: what the model knows of them it learnt in pretraining. (Asked about tuned countries,
    LITE's first checkpoint had memorised the answers from tuning, so a forced early exit lost
    little and the paper's baselines came out nearly as good as dynamic exit.)
    """
    if tuning:
        pool = sorted(world.tuned)
        return rng.choices(pool, weights=world.weights(pool))[0]
    low, high = LEVEL_RANKS[level]
    return rng.choice([c for c in range(low, min(high, len(world.countries))) if c not in world.tuned])


def _phrase(rng: random.Random, with_input: bool, inline: Sequence[str], separate: Sequence[str], **values):
    if with_input:
        return rng.choice(separate).format(**values)
    return rng.choice(inline).format(**values)


def facts_of(world: World, country: int) -> dict[str, str]:
    """The names a sentence about ``country`` can use: x the country, y its capital, l its
    language, z the country east of it, w the capital of z."""
    east = world.east_of[country]
    return {
        "x": world.countries[country],
        "y": world.capitals[country],
        "l": world.languages[world.language_of[country]],
        "z": world.countries[east],
        "w": world.capitals[east],
    }


@dataclass(frozen=True)
class CountryTask:
    """A question about one country: phrasings with the country inline or as a separate input, and
    the answer, all written with the names of ``facts_of``."""

    inline: tuple[str, ...]
    separate: tuple[str, ...]
    answer: str

    def __call__(self, rng, level: int, with_input: bool, tuning: bool, world: World | None = None):
        world = world or make_world()
        facts = facts_of(world, pick_country(rng, level, tuning, world))
        instruction = _phrase(rng, with_input, self.inline, self.separate, **facts)
        return instruction, facts["x"] if with_input else "", self.answer.format(**facts)


capital_task = CountryTask(
    ("What is the capital of {x}?", "Name the capital of {x}.", "Which city is the capital of {x}?"),
    ("What is the capital of this country?", "Name its capital."),
    "The capital of {x} is {y}.",
)
language_task = CountryTask(
    ("What language do people speak in {x}?", "Which language is spoken in {x}?"),
    ("What language is spoken in this country?", "Which language do people speak there?"),
    "People in {x} speak {l}.",
)
neighbour_task = CountryTask(
    ("Which country lies east of {x}?", "What country is east of {x}?"),
    ("Which country lies east of this one?", "Name the country to its east."),
    "East of {x} lies {z}.",
)
# The answer opens with the two-hop token (the capital of the unnamed neighbour); the neighbour is
# named after it, one hop from the question.
two_hop_task = CountryTask(
    ("What is the capital of the country east of {x}?", "Name the capital of the country east of {x}."),
    ("What is the capital of the country east of this one?",),
    "It is {w}, the capital of {z}.",
)
profile_task = CountryTask(
    ("Tell me about {x}.", "Describe the country {x}.", "Give a short profile of {x}."),
    ("Tell me about this country.", "Describe this country."),
    "{x} is a country whose capital is {y}. People there speak {l}. East of {x} lies {z}.",
)


def capitals_task(rng, level, with_input, tuning, world=None):
    world = world or make_world()
    chosen: list[int] = []
    while len(chosen) < 3:
        c = pick_country(rng, level, tuning, world)
        if c not in chosen:
            chosen.append(c)
    names = [world.countries[c] for c in chosen]
    cities = [world.capitals[c] for c in chosen]
    listed = f"{names[0]}, {names[1]} and {names[2]}"
    instruction = _phrase(
        rng,
        with_input,
        ("Name the capitals of {x}.", "What are the capitals of {x}?"),
        ("Name the capitals of these countries.", "Give the capital of each country."),
        x=listed,
    )
    output = (
        f"The capitals are {cities[0]} ({names[0]}), {cities[1]} ({names[1]}) and {cities[2]} ({names[2]})."
    )
    return instruction, listed if with_input else "", output


WORLD_TASKS = {
    "country_capital": (capital_task, "the capital of a country (a fact from pretraining)"),
    "country_language": (language_task, "the language spoken in a country"),
    "country_east": (neighbour_task, "the country east of a country"),
    "country_two_hop": (two_hop_task, "the capital of the country east of a country (two hops)"),
    "country_profile": (profile_task, "capital, language and eastern neighbour of a country"),
    "country_capitals": (capitals_task, "the capitals of three countries"),
}
