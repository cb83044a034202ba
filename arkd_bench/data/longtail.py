"""The `longtail` source: a synthetic task whose answer distribution is known exactly.

Every prompt has K candidate answers with probabilities
    p_0 = head_mass                                    (the head, always the mode)
    p_r = (1 - head_mass) * r**-zipf_s / Z,  r = 1..K-1   with Z = sum_j j**-zipf_s
so a teacher trained on samples learns that distribution, and a student's
distribution over the same candidates (the teacher-forced probability of each
answer followed by eos) can be compared with it exactly: head mass, tail
coverage, entropy, distance to the teacher. FKL should cover the tail, RKL
should seek the mode.

The generator, with one `random.Random(seed)` drawn from in this order:
1. pool: `pool_size` distinct two-syllable words sampled from all 4900
   consonant-vowel-consonant-vowel words over "bdfgklmnprstvz" x "aeiou";
2. for prompt i = 0..num_prompts-1: its K answers, `rng.sample(pool, K)`,
   ranked in that order (answer 0 is the head); its prompt is
   "Name the word for case {i}.";
3. for each prompt in order: `samples_per_prompt` answers drawn i.i.d. with
   `rng.choices(answers, weights=probs)`, one training example each;
4. the training examples shuffled with `rng.shuffle`;
5. valid: `sorted(rng.sample(range(num_prompts), valid_prompts))`.
Test is every prompt and valid a subset, each once, with the references being
the answers in rank order and `meta = {"case": i, "answers": [...], "probs": [...]}`.
Valid and test reuse the training prompts on purpose: the task measures how a
student matches the teacher's distribution, not generalization to new prompts.
"""
from __future__ import annotations

import itertools
import random
from pathlib import Path

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from arkd_bench.data.base import DatasetSource, DatasetSplits, Example, SourceOptions

CONSONANTS, VOWELS = "bdfgklmnprstvz", "aeiou"
PROMPT = "Name the word for case {case}."


def answer_distribution(num_answers: int, head_mass: float, zipf_s: float) -> list[float]:
    """[p_0, ..., p_{K-1}]: the head, then a Zipf tail with exponent zipf_s."""
    weights = [r ** -zipf_s for r in range(1, num_answers)]
    z = sum(weights)
    return [head_mass] + [(1.0 - head_mass) * w / z for w in weights]


def _all_words() -> list[str]:
    syllables = [c + v for c in CONSONANTS for v in VOWELS]
    return [a + b for a, b in itertools.product(syllables, syllables)]


class LongtailOptions(SourceOptions):
    num_prompts: PositiveInt = 50
    num_answers: int = Field(8, ge=2, description="K candidate answers per prompt")
    head_mass: float = Field(0.5, gt=0, lt=1, description="probability of the head answer")
    zipf_s: float = Field(1.0, ge=0, description="Zipf exponent of the tail (0 = uniform tail)")
    samples_per_prompt: PositiveInt = Field(64, description="training examples sampled per prompt")
    valid_prompts: NonNegativeInt = 10
    pool_size: int = Field(64, ge=2, le=len(CONSONANTS) ** 2 * len(VOWELS) ** 2)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self):
        if self.num_answers > self.pool_size:
            raise ValueError(f"num_answers ({self.num_answers}) exceeds pool_size ({self.pool_size})")
        if self.valid_prompts > self.num_prompts:
            raise ValueError(f"valid_prompts ({self.valid_prompts}) exceeds num_prompts ({self.num_prompts})")
        probs = answer_distribution(self.num_answers, self.head_mass, self.zipf_s)
        if probs[0] <= probs[1]:
            raise ValueError(
                f"head_mass {self.head_mass} is not above the largest tail probability {probs[1]:.4f}: "
                "the head would not be the mode; raise head_mass or zipf_s"
            )
        return self


class LongtailSource(DatasetSource):
    """Prompts with a known head + Zipf-tail answer distribution; training data sampled from it."""

    name = "longtail"
    Options = LongtailOptions

    def load(self, base_dir: Path | None = None) -> DatasetSplits:
        o: LongtailOptions = self.options
        probs = answer_distribution(o.num_answers, o.head_mass, o.zipf_s)
        rng = random.Random(o.seed)
        pool = rng.sample(_all_words(), o.pool_size)
        answers = [rng.sample(pool, o.num_answers) for _ in range(o.num_prompts)]
        prompts = [PROMPT.format(case=i) for i in range(o.num_prompts)]
        train = [
            Example(prompts[i], (word,), {"case": i})
            for i in range(o.num_prompts)
            for word in rng.choices(answers[i], weights=probs, k=o.samples_per_prompt)
        ]
        rng.shuffle(train)
        valid_cases = sorted(rng.sample(range(o.num_prompts), o.valid_prompts))

        def scored(i: int) -> Example:
            return Example(prompts[i], tuple(answers[i]), {"case": i, "answers": answers[i], "probs": probs})

        description = (
            f"longtail: {o.num_prompts} prompts x {o.num_answers} answers, head_mass {o.head_mass}, "
            f"zipf_s {o.zipf_s}, {o.samples_per_prompt} samples per prompt, seed {o.seed}: "
            f"train {len(train)}, valid {o.valid_prompts}, test {o.num_prompts}"
        )
        return DatasetSplits.build(train, [scored(i) for i in valid_cases], map(scored, range(o.num_prompts)),
                                   description)
