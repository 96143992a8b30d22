"""Generate the quickstart task, data/toy_sentiment/{train,dev}.tsv (SST-2 layout: ``sentence\\tlabel``).

Synthetic reviews written for this repository (no benchmark data): a subject, a sentiment phrase that may be
negated ("was not great") and an optional neutral clause. The label is the phrase's polarity, flipped by
negation, so a bag of words is not enough. Deterministic: ``python data/make_toy_sentiment.py``.
"""

from __future__ import annotations

import random
from pathlib import Path

SUBJECTS = [
    "the film",
    "this movie",
    "the plot",
    "the acting",
    "the soundtrack",
    "the ending",
    "the cast",
    "the script",
    "the director's new work",
    "the story",
    "the dialogue",
    "the final act",
    "the camera work",
    "this sequel",
    "the lead performance",
    "the pacing",
]
POSITIVE = [
    "great",
    "wonderful",
    "moving",
    "brilliant",
    "funny",
    "charming",
    "gripping",
    "beautiful",
    "clever",
    "delightful",
    "superb",
    "touching",
    "fresh",
    "memorable",
    "enjoyable",
    "excellent",
]
NEGATIVE = [
    "boring",
    "dull",
    "awful",
    "clumsy",
    "tedious",
    "bland",
    "predictable",
    "messy",
    "lifeless",
    "painful",
    "forgettable",
    "weak",
    "shallow",
    "tiresome",
    "poor",
    "disappointing",
]
INTENSIFIERS = ["", "", "really ", "truly ", "quite ", "rather ", "very "]
NEUTRAL = [
    "",
    "",
    "",
    " and it runs two hours",
    " , as the trailer suggested",
    " from start to finish",
    " in the second half",
    " for most of its length",
    " , according to my friends",
]
VERBS = ["was", "is", "felt", "seemed", "turned out"]


def make(n: int, rng: random.Random) -> list[tuple[str, int]]:
    rows = []
    for _ in range(n):
        positive = rng.random() < 0.5
        word = rng.choice(POSITIVE if positive else NEGATIVE)
        negated = rng.random() < 0.35
        verb = rng.choice(VERBS)
        neg = " not" if negated else ""
        if verb == "turned out":
            phrase = f"turned out{neg} to be {rng.choice(INTENSIFIERS)}{word}"
        else:
            phrase = f"{verb}{neg} {rng.choice(INTENSIFIERS)}{word}"
        sentence = f"{rng.choice(SUBJECTS)} {phrase}{rng.choice(NEUTRAL)} ."
        rows.append((sentence, int(positive != negated)))
    return rows


def main() -> None:
    rng = random.Random(20261123)
    out = Path(__file__).resolve().parent / "toy_sentiment"
    out.mkdir(exist_ok=True)
    for split, n in (("train", 2000), ("dev", 500)):
        with open(out / f"{split}.tsv", "w") as f:
            f.write("sentence\tlabel\n")
            for s, y in make(n, rng):
                f.write(f"{s}\t{y}\n")
    print(f"wrote {out}/train.tsv (2000) and dev.tsv (500)")


if __name__ == "__main__":
    main()
