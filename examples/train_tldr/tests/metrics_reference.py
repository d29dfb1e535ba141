#!/usr/bin/env python3
"""An independent implementation of the metrics in src/metrics.hpp, and the check that the C++
one agrees with it.

Written from the definitions (Lin 2004 for ROUGE-L with rouge-score's tokenisation; Popovic 2015
for chrF with sacreBLEU 2.x's defaults), as plainly as possible and by a different method from
the C++ (Python's own Unicode handling, dictionaries of n-gram counts, the full LCS table), with
nothing but the standard library. Text is bytes, decoded as UTF-8 with "surrogateescape": each
byte that is not part of a well-formed sequence becomes its own character U+DC80..U+DCFF.

  metrics_reference.py check DRIVER [--pairs N] [--seed S]
      generates N seeded pairs (random and adversarial: unicode, invalid UTF-8, repeats, empty),
      scores them here and with DRIVER (tests/metrics_driver.cpp: hex pairs in, scores out) and
      fails unless every score agrees to 1e-9.
  metrics_reference.py score CANDIDATE REFERENCE
      prints the three scores of one pair.
"""

import argparse
import random
import re
import subprocess
import sys
from collections import Counter

TOLERANCE = 1e-9


def text_of(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


# ---- ROUGE-L (F1, no stemming) ----

def rouge_tokens(data: bytes) -> list:
    # Lowercase, then the tokens are the maximal runs of a-z and 0-9.
    return re.findall(r"[a-z0-9]+", text_of(data).lower())


def lcs(a: list, b: list) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a, 1):
        for j, y in enumerate(b, 1):
            table[i][j] = table[i - 1][j - 1] + 1 if x == y else max(table[i - 1][j], table[i][j - 1])
    return table[len(a)][len(b)]


def rouge_l_f1(candidate: bytes, reference: bytes) -> float:
    cand, ref = rouge_tokens(candidate), rouge_tokens(reference)
    if not cand or not ref:
        return 0.0
    common = lcs(cand, ref)
    if common == 0:
        return 0.0
    precision, recall = common / len(cand), common / len(ref)
    return 2 * precision * recall / (precision + recall)


# ---- chrF (beta 2, character 1..6-grams, whitespace removed) ----

BETA = 2
ORDERS = 6
EPS = 1e-16


def char_ngrams(chars: str, n: int) -> Counter:
    return Counter(chars[i:i + n] for i in range(len(chars) - n + 1))


def chrf_statistics(candidate: bytes, reference: bytes) -> list:
    """[(candidate n-grams, reference n-grams, clipped matches)] for n = 1..6."""
    cand = "".join(text_of(candidate).split())  # str.split() splits on Unicode whitespace
    ref = "".join(text_of(reference).split())
    stats = []
    for n in range(1, ORDERS + 1):
        c, r = char_ngrams(cand, n), char_ngrams(ref, n)
        matches = sum(min(count, r[g]) for g, count in c.items() if g in r)
        n_cand = sum(c.values()) if r else 0  # no reference n-grams: no candidate ones counted
        stats.append((n_cand, sum(r.values()), matches))
    return stats


def f_beta(p: float, r: float) -> float:
    b2 = BETA * BETA
    return (1 + b2) * p * r / (b2 * p + r)


def chrf(candidate: bytes, reference: bytes) -> float:
    """Effective order: average P and R over the orders both sides have."""
    precisions, recalls = [], []
    for n_cand, n_ref, matches in chrf_statistics(candidate, reference):
        if n_cand > 0 and n_ref > 0:
            precisions.append(matches / n_cand)
            recalls.append(matches / n_ref)
    if not precisions:
        return 0.0
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    return 0.0 if p + r == 0 else 100 * f_beta(p, r)


def chrf_eps(candidate: bytes, reference: bytes) -> float:
    """Epsilon smoothing: the mean over all six orders of the per-order F-beta."""
    total = 0.0
    for n_cand, n_ref, matches in chrf_statistics(candidate, reference):
        p = matches / n_cand if n_cand else EPS
        r = matches / n_ref if n_ref else EPS
        total += f_beta(p, r) if BETA * BETA * p + r > 0 else EPS
    return 100 * total / ORDERS


# ---- test pairs ----

WORDS = ["the", "a", "cat", "sat", "on", "mat", "Tool", "tools", "parse", "JSON", "file", "files",
         "x11", "2024", "gtk3", "don't", "e-mail", "naïve", "café", "Straße", "İstanbul",
         "\u212Aelvin", "σοφία", "ΣΟΦΊΑ", "Москва", "日本語", "東京", "😀", "a\u0301", "ﬁne"]
SEPARATORS = [" ", " ", " ", "  ", ", ", ". ", "\t", "\n", " - ", "/", "\u00a0", "\u3000",
              "\u2028", "\u0085", "\u200b", "\u180e", "\u1680", "\u2009", "\x1c", "\x0b"]
ALPHABET = ("abcABC019 .,;-'\t\n"
            "éÉèüÜßıİ\u212A\u0130\u0307\u0301ΣσςЖж日本語😀👍🏽\u00a0\u3000\u2028\u200b\u180e\ufeff")
INVALID = [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1\x81", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
           b"\xf5", b"\xff", b"\x85", b"\xa0", b"\xe0\x80\x80", b"\xf0\x8f\xbf\xbf", b"\xc2", b"\xf0\x9f\x98"]

ADVERSARIAL = [
    (b"", b""), (b"", b"a"), (b"a", b""), (b" ", b" "), (b"\t\n ", b"a"), (b"a", b"a"),
    (b"a", b"A"), (b"aa", b"ab"), (b"a b c", b"abc"), (b"abcdef", b"abcdef"), (b"abcdefg", b"abcdef"),
    (b"banana", b"bandana"), (b"ban ana", b"band\tana"), (b"aaaaaaaaaa", b"aaa"), (b"abababab", b"babababa"),
    (b"...", b"..."), (b"!!!", b"hello"), (b"Hello, World!", b"hello world"), (b"x", b"xxxxxxx"),
    ("日本".encode(), "日本語".encode()), ("é".encode(), "è".encode()), ("é".encode(), "e\u0301".encode()),
    ("\u212A".encode(), b"k"), ("İstanbul".encode(), b"i stanbul"), ("\u0130".encode(), b"i"),
    (b"\xc3", b"\xc3\xa9"), (b"\x80\x80", b"\x80"), (b"\xc2\x85", b"\x85"), (b"a\xc2\xa0b", b"ab"),
    (b"a\xa0b", b"ab"), (b"\xed\xa0\x80", b"\xed\xa0\x80"), (b"caf\xc3", b"caf\xc3\xa9"),
    (b"the the the the", b"the"), (b"the cat the cat", b"cat the cat the"),
    (b"police killed the gunman", b"police kill the gunman"),
    (b"the gunman kill police", b"police killed the gunman"),
    (b"a\x00b", b"a b"), (b"\x1c\x1d\x1e\x1f", b""), (b"z" * 300, b"z" * 299 + b"y"),
]


def random_sentence(rng: random.Random, words: int) -> bytes:
    out = []
    for k in range(words):
        w = rng.choice(WORDS)
        if rng.random() < 0.2:
            w = w.upper() if rng.random() < 0.5 else w.capitalize()
        out.append(w)
        if k + 1 < words:
            out.append(rng.choice(SEPARATORS))
    text = "".join(out).encode("utf-8")
    if rng.random() < 0.1:  # an invalid byte sequence somewhere
        cut = rng.randrange(len(text) + 1)
        text = text[:cut] + rng.choice(INVALID) + text[cut:]
    return text


def mutate(rng: random.Random, words: list) -> list:
    words = list(words)
    for _ in range(rng.randrange(4)):
        op = rng.randrange(3)
        if op == 0 and words:
            del words[rng.randrange(len(words))]
        elif op == 1:
            words.insert(rng.randrange(len(words) + 1), rng.choice(WORDS))
        elif len(words) > 1:
            i, j = rng.randrange(len(words)), rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
    return words


def random_pair(rng: random.Random) -> tuple:
    kind = rng.randrange(6)
    if kind == 0:  # independent sentences from a small vocabulary: partial overlaps
        return random_sentence(rng, rng.randrange(0, 15)), random_sentence(rng, rng.randrange(0, 15))
    if kind == 1:  # a reference and an edited copy of it
        words = [rng.choice(WORDS) for _ in range(rng.randrange(1, 20))]
        return " ".join(mutate(rng, words)).encode(), " ".join(words).encode()
    if kind == 2:  # random characters, unicode and whitespace of every kind
        def chars(k):
            return "".join(rng.choice(ALPHABET) for _ in range(k)).encode("utf-8")
        return chars(rng.randrange(0, 25)), chars(rng.randrange(0, 25))
    if kind == 3:  # random bytes: mostly invalid UTF-8
        def junk(k):
            return bytes(rng.choice(b"ab \x80\xc3\xa9\xe6\x97\xa5\xed\xa0\xf0\x9f\x98\x80\xff\x85")
                         for _ in range(k))
        return junk(rng.randrange(0, 20)), junk(rng.randrange(0, 20))
    if kind == 4:  # repeats: few distinct characters or words, so counts clip
        unit = rng.choice(["a", "ab", "aba", "é", "日本", "the ", "x y ", "Σσ"])
        return (unit * rng.randrange(0, 12)).encode(), (unit * rng.randrange(0, 12)).encode()
    # long ones
    return random_sentence(rng, rng.randrange(50, 120)), random_sentence(rng, rng.randrange(50, 120))


def make_pairs(count: int, seed: int) -> list:
    rng = random.Random(seed)
    pairs = list(ADVERSARIAL) + [(b, a) for a, b in ADVERSARIAL]
    while len(pairs) < count:
        pairs.append(random_pair(rng))
    return pairs


# Published values the reference must reproduce before it may judge the C++ (the C++ is held to
# the same ones, and more, in metrics_test.cpp).
PUBLISHED = [
    # Lin (2004), section 3.1
    (rouge_l_f1, "police kill the gunman", "police killed the gunman", 0.75, 1e-12),
    (rouge_l_f1, "the gunman kill police", "police killed the gunman", 0.5, 1e-12),
    # google-research rouge/rouge_scorer_test.py, testRougeLNonConsecutive
    (rouge_l_f1, "testing two", "testing one two", 0.8, 1e-12),
    # mjpost/sacrebleu test/test_chrf.py: test_chrf_sentence_level (eps_smoothing=True) and
    # test_cases_effective_order (beta-independent cases)
    (chrf_eps, "Co nás nejvíc trápí, protože lékaři si vybírají, kdo bude žít a kdo zemře.",
     "Nejvíce smutní jsme z toho, že musíme rozhodovat o tom, kdo bude žít a kdo zemře.",
     39.14078509, 1e-8),
    (chrf, "a b c", "abc", 100.0, 1e-12),
    (chrf, "aa", "ab", 25.0, 1e-12),
]


def published_values_hold() -> bool:
    ok = True
    for f, cand, ref, want, tolerance in PUBLISHED:
        got = f(cand.encode(), ref.encode())
        if not abs(got - want) <= tolerance:
            print(f"reference {f.__name__}({cand!r}, {ref!r}) = {got!r}, published {want!r}",
                  file=sys.stderr)
            ok = False
    return ok


def check(driver: str, count: int, seed: int) -> int:
    if not published_values_hold():
        return 1
    pairs = make_pairs(count, seed)
    request = "".join(f"{c.hex()}\t{r.hex()}\n" for c, r in pairs)
    run = subprocess.run([driver], input=request, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        print(f"driver {driver} failed ({run.returncode}):\n{run.stderr}", file=sys.stderr)
        return 1
    lines = run.stdout.splitlines()
    if len(lines) != len(pairs):
        print(f"driver gave {len(lines)} lines for {len(pairs)} pairs", file=sys.stderr)
        return 1
    functions = [("rouge_l_f1", rouge_l_f1), ("chrf", chrf), ("chrf_eps", chrf_eps)]
    bad, worst = 0, 0.0
    for (cand, ref), line in zip(pairs, lines):
        got = [float(x) for x in line.split()]
        if len(got) != len(functions):
            print(f"malformed driver line {line!r}", file=sys.stderr)
            return 1
        for (name, f), value in zip(functions, got):
            want = f(cand, ref)
            worst = max(worst, abs(value - want))
            if not abs(value - want) <= TOLERANCE:
                bad += 1
                if bad <= 20:
                    print(f"{name}({cand!r}, {ref!r}): C++ {value!r}, reference {want!r}",
                          file=sys.stderr)
    print(f"{len(pairs)} pairs x {len(functions)} metrics, largest difference {worst:.3g}, "
          f"{bad} disagreements")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check")
    c.add_argument("driver")
    c.add_argument("--pairs", type=int, default=600)
    c.add_argument("--seed", type=int, default=20240601)
    s = sub.add_parser("score")
    s.add_argument("candidate")
    s.add_argument("reference")
    args = parser.parse_args()
    if args.command == "check":
        return check(args.driver, args.pairs, args.seed)
    cand = args.candidate.encode("utf-8", errors="surrogateescape")
    ref = args.reference.encode("utf-8", errors="surrogateescape")
    print(f"rouge_l_f1 {rouge_l_f1(cand, ref)!r}\nchrf {chrf(cand, ref)!r}\nchrf_eps {chrf_eps(cand, ref)!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
