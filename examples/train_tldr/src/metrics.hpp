/* Reference-based evaluation metrics: how close a generated summary is to the gold one.
 * Sentence-level scores, and their mean over a test set (which is what the experiment reports).
 * Both metrics are defined to agree with the usual Python packages at their defaults, so that the
 * numbers can be compared with published ones; tests/metrics_reference.py is an independent
 * implementation of the definitions below and the ctest tldr_metrics_reference holds the two to
 * 1e-9 on a few hundred random and adversarial pairs.
 *
 * Text is UTF-8. Where characters matter (chrF, and the lowercasing of ROUGE-L) the bytes are
 * decoded strictly (Unicode's table 3-7: no overlong forms, no surrogates, nothing above
 * U+10FFFF); every byte that is not part of a well-formed sequence is one character of its own,
 * U+DC00 + the byte (U+DC80..U+DCFF, what Python's "surrogateescape" decoding gives), which no
 * well-formed text contains, so it equals only the same invalid byte.
 *
 * ROUGE-L F1 (Lin 2004, section 3.1), as Google's rouge-score package (rouge_scorer.RougeScorer
 * with rouge_types ["rougeL"]) computes it by default, on a scale of 0 to 1:
 *  - tokens: the text is lowercased (Python's str.lower(), Unicode full lowercasing), and every
 *    maximal run of characters other than ASCII a-z and 0-9 separates tokens; empty tokens are
 *    dropped. No stemming (use_stemmer=False, the default), no stopword removal, one sentence
 *    (rougeL, not the newline-split summary-level rougeLsum). The only non-ASCII characters that
 *    lowercase to something with a-z in it are U+212A KELVIN SIGN, which becomes the letter k,
 *    and U+0130 LATIN CAPITAL LETTER I WITH DOT ABOVE, which becomes i + U+0307 (so it ends a
 *    token after the i); every other non-ASCII character, and every invalid byte, separates.
 *  - LCS = the length of the longest common subsequence of the two token sequences;
 *    P = LCS / |candidate tokens|, R = LCS / |reference tokens|, F1 = 2PR / (P + R), that is
 *    F-beta with beta = 1 (rouge-score's fmeasure; Lin's paper leaves beta open). The score is 0
 *    when either side has no token or LCS = 0.
 *
 * chrF (Popović 2015) at the sentence level with sacreBLEU 2.x's defaults (sentence_chrf,
 * CHRF(): char_order 6, word_order 0, i.e. chrF and not chrF++, beta 2, case-sensitive,
 * whitespace removed, eps_smoothing False), on sacreBLEU's scale of 0 to 100:
 *  - characters: Unicode code points (see above), with every whitespace character removed
 *    first. Whitespace is what Python's str.split() splits on: U+0009-000D, U+001C-001F, U+0020,
 *    U+0085, U+00A0, U+1680, U+2000-200A, U+2028, U+2029, U+202F, U+205F, U+3000 (not U+180E,
 *    not U+200B). Case is kept: "A" and "a" are different characters.
 *  - for n = 1..6: H_n = the number of character n-grams of the candidate (with repeats),
 *    R_n = the same for the reference, M_n = the clipped matches, sum over distinct n-grams g of
 *    min(count in candidate, count in reference). H_n counts as 0 when R_n = 0.
 *  - effective-order averaging (sacreBLEU's default; the signature says "eff:yes"): the orders
 *    with H_n > 0 and R_n > 0 are the effective ones; P = the mean of M_n / H_n over them and
 *    R = the mean of M_n / R_n. Orders missing on either side (a string shorter than n
 *    characters) are left out rather than counted as zero, so "a" against "a" is 100.
 *    chrF = 100 (1 + beta^2) P R / (beta^2 P + R), and 0 when no order is effective or
 *    P + R = 0. Consequences: identical strings score 100 unless they are empty or all
 *    whitespace (0); an empty side scores 0.
 *  - chrf_smoothing::epsilon is sacreBLEU's opt-in alternative (eps_smoothing=True, the CLI's
 *    --chrf-eps-smoothing; what chrF++.py, Moses and NLTK compute): per order, p_n = M_n / H_n
 *    (eps = 1e-16 when H_n = 0), r_n = M_n / R_n (eps when R_n = 0),
 *    f_n = (1 + beta^2) p_n r_n / (beta^2 p_n + r_n) (eps when the denominator is 0), and
 *    chrF = 100 * (f_1 + ... + f_6) / 6, so short strings are not excused missing orders ("a"
 *    against "a" is 16.67). It is here for comparison with numbers computed that way; use the
 *    default unless a comparison needs it.
 *
 * Cost: ROUGE-L is O(|candidate tokens| * |reference tokens|); chrF is O(N log N) in the number
 * of characters N of both strings (one sort of 64-bit windows while every character is below
 * U+03FF, of 128-bit ones otherwise). Measured with tests/metrics_driver --bench on pairs of
 * 10-word sentences, per second of one core's CPU time: English, ROUGE-L 1.3M, chrF 270k, both
 * 228k; Russian (the 128-bit path), chrF 210k.
 */
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tldr {

// ROUGE-L F1 in [0, 1] of a candidate summary against one reference (see above).
double rouge_l_f1(std::string_view candidate, std::string_view reference);

// The tokens ROUGE-L compares (lowercase runs of a-z and 0-9, see above).
std::vector<std::string> rouge_tokens(std::string_view text);

enum class chrf_smoothing {
  effective_order,  // sacreBLEU's default
  epsilon,          // sacreBLEU's eps_smoothing=True
};

// chrF (beta 2, character n-grams 1..6, whitespace removed) in [0, 100] (see above).
double chrf(std::string_view candidate, std::string_view reference);
double chrf(std::string_view candidate, std::string_view reference, chrf_smoothing smoothing);

// Whitespace-separated pieces of the text: the length the tables report.
std::size_t word_count(std::string_view text);

using sentence_metric = double (*)(std::string_view candidate, std::string_view reference);

// The mean of metric(candidates[i], references[i]) over i: the corpus score the experiment
// reports (a macro-average of sentence scores, not sacreBLEU's corpus_chrf, which pools the
// n-gram counts). Throws std::invalid_argument when the sizes differ or there are no pairs.
double mean_sentence_score(std::span<const std::string> candidates, std::span<const std::string> references,
                           sentence_metric metric);

}  // namespace tldr
