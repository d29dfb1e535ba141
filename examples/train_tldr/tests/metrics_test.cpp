#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "metrics.hpp"

using namespace tldr;

namespace {

double chrf_eps(std::string_view candidate, std::string_view reference) {
  return chrf(candidate, reference, chrf_smoothing::epsilon);
}

}  // namespace

// ---- ROUGE-L ----

TEST(RougeL, IdenticalIsOneDisjointIsZero) {
  EXPECT_DOUBLE_EQ(rouge_l_f1("the cat sat on the mat", "the cat sat on the mat"), 1.0);
  EXPECT_DOUBLE_EQ(rouge_l_f1("the cat sat", "a dog ran"), 0.0);
}

TEST(RougeL, WorkedExample) {
  // candidate: the quick brown fox jumps over the lazy dog      (9 tokens)
  // reference: the quick brown dog jumps on the log             (8 tokens)
  // LCS: the quick brown . jumps . the = 5 (taking "dog" instead gives only
  // "the quick brown dog" = 4). P = 5/9, R = 5/8, F1 = 2 (25/72) / (85/72) = 10/17.
  EXPECT_DOUBLE_EQ(rouge_l_f1("the quick brown fox jumps over the lazy dog", "The quick brown dog jumps on the log."),
                   10.0 / 17.0);
  // Repeats: LCS("the the the", "the") = 1, P = 1/3, R = 1, F1 = 1/2.
  EXPECT_DOUBLE_EQ(rouge_l_f1("the the the", "the"), 0.5);
  EXPECT_DOUBLE_EQ(rouge_l_f1("the", "the the the"), 0.5);
  // Order matters: LCS("a b c d", "d c b a") = 1, F1 = 1/4; a bag of words would give 1.
  EXPECT_DOUBLE_EQ(rouge_l_f1("a b c d", "d c b a"), 0.25);
}

TEST(RougeL, PublishedLin2004) {
  // Lin (2004), ROUGE, section 3.1: against S1 "police killed the gunman", S2 "police kill the
  // gunman" scores 3/4 (LCS "police the gunman") and S3 "the gunman kill police" 1/2.
  EXPECT_DOUBLE_EQ(rouge_l_f1("police kill the gunman", "police killed the gunman"), 0.75);
  EXPECT_DOUBLE_EQ(rouge_l_f1("the gunman kill police", "police killed the gunman"), 0.5);
}

TEST(RougeL, PublishedRougeScoreTests) {
  // google-research/google-research rouge/rouge_scorer_test.py (score(target, prediction)):
  // testRougeLConsecutive, testRougeLNonConsecutive: F 4/5; testRougeEmpty: 0.
  EXPECT_DOUBLE_EQ(rouge_l_f1("testing one", "testing one two"), 0.8);
  EXPECT_DOUBLE_EQ(rouge_l_f1("testing two", "testing one two"), 0.8);
  EXPECT_DOUBLE_EQ(rouge_l_f1("", "testing one two"), 0.0);
  // testRougeLAgainstRouge155: the first two lines of rouge/testdata/{prediction,target}.txt,
  // F 0.51163 and 0.50000 from the official ROUGE-1.5.5 (5 decimals).
  const char* target0 =
      "ZfbCUIUuePaiLVUlCaUXxkpu XPeWing tUHfPMuZ',-Xd Y BrUgVJing M-HV.-DgdDaY.rFDJCRing Ht-LM "
      "EKBDXkME,yz'RBr q'wtion wIojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxer tKM L\n";
  const char* prediction0 = "rFDJCRtion Ht-LM EKtDXkME,yz'RBr q'wer wrojNbN wL,b .a-'XdQggyFl jB-RPP'iyOIcUxi\n";
  const char* target1 =
      "KsJdPByEtAor fE-Qg Dpdbring cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMtion psing sbKao "
      "Q m qiing LMmer HqqLFXe,XPY,J XsurkMer ,ed nB'wH'bWVHjWFEing tQ.saefZwJtKrTlixYpMMsJing "
      "UCAPwNHeYVjDing c T BUySKtion gMPfJpwGw p'NvxAoping eu pBwMBKV'I DNxqelhu,PHPxDEq,mtion SN\n";
  const char* prediction1 =
      "n cw-WeFyu vC MoBL Xdn g wkvcEiGvKtion BDFhrpMer pstion sbKao Q m qier LMmed "
      "HqqLFXe,XPY,J XsurkMeo ,ed nB'wH'bWVHjWFEer tQ.saefZwJtKrTlixYpMMNJtion UCAPwNHeYVjD\n";
  EXPECT_NEAR(rouge_l_f1(prediction0, target0), 0.51163, 5e-6);
  EXPECT_NEAR(rouge_l_f1(prediction1, target1), 0.50000, 5e-6);
}

TEST(RougeL, EmptyOrWithoutTokens) {
  EXPECT_EQ(rouge_l_f1("", ""), 0.0);
  EXPECT_EQ(rouge_l_f1("words", ""), 0.0);
  EXPECT_EQ(rouge_l_f1("", "words"), 0.0);
  EXPECT_EQ(rouge_l_f1("...!?", "...!?"), 0.0);  // identical, but no tokens
}

TEST(RougeL, CaseAndPunctuation) {
  EXPECT_DOUBLE_EQ(rouge_l_f1("Hello, World!", "hello world"), 1.0);
  EXPECT_DOUBLE_EQ(rouge_l_f1("e-mail", "E mail"), 1.0);
  EXPECT_EQ(rouge_tokens("Don't STOP-me_now, 2x!"), (std::vector<std::string>{"don", "t", "stop", "me", "now", "2x"}));
}

TEST(RougeL, Utf8) {
  // Every non-ASCII character separates tokens: "Café" is "caf"; LCS(caf au lait, cafe au lait)
  // = 2, F1 = 2/3. No accent folding.
  EXPECT_EQ(rouge_tokens("Café au lait"), (std::vector<std::string>{"caf", "au", "lait"}));
  EXPECT_DOUBLE_EQ(rouge_l_f1("Café au lait", "cafe au lait"), 2.0 / 3.0);
  EXPECT_EQ(rouge_l_f1("日本語 東京", "日本語 東京"), 0.0);
  // Python's lower(): KELVIN SIGN -> k; İ -> i + combining dot, which separates.
  EXPECT_EQ(rouge_tokens("\u212Aelvin İstanbul"), (std::vector<std::string>{"kelvin", "i", "stanbul"}));
  // Invalid bytes separate too.
  EXPECT_EQ(rouge_tokens("ab\xff"
                         "cd\xe2\x82"
                         "ef\xc3"),
            (std::vector<std::string>{"ab", "cd", "ef"}));
}

// ---- chrF ----

TEST(Chrf, IdenticalIsHundredDisjointIsZero) {
  EXPECT_DOUBLE_EQ(chrf("the cat sat on the mat", "the cat sat on the mat"), 100.0);
  EXPECT_DOUBLE_EQ(chrf("a", "a"), 100.0);  // effective order: orders 2-6 are left out
  EXPECT_EQ(chrf("abc", "xyz"), 0.0);
}

TEST(Chrf, WorkedExampleAllOrders) {
  // candidate "banana", reference "bandana"; H, R, M per order n:
  //  1: b a n a n a (6) | b a n d a n a (7) | b 1 + a 3 + n 2 = 6   P 1    R 6/7
  //  2: ba an na an na (5) | ba an nd da an na (6) | ba 1 + an 2 + na 1 = 4   P 4/5  R 2/3
  //  3: ban ana nan ana (4) | ban and nda dan ana (5) | ban + ana = 2   P 1/2  R 2/5
  //  4: bana anan nana (3) | band anda ndan dana (4) | 0
  //  5: banan anana (2) | banda andan ndana (3) | 0
  //  6: banana (1) | bandan andana (2) | 0
  // All six orders effective: P = (1 + 4/5 + 1/2) / 6 = 23/60, R = (6/7 + 2/3 + 2/5) / 6 = 101/315.
  // chrF = 100 * 5PR / (4P + R) = 100 * (2323/3780) / (584/315) = 100 * 2323/7008.
  const double expected = 100.0 * 2323.0 / 7008.0;  // 33.1478...
  EXPECT_NEAR(chrf("banana", "bandana"), expected, 1e-12);
  // Whitespace of any kind is removed before the n-grams are taken.
  EXPECT_NEAR(chrf(" ban ana ", "band\tana\n"), expected, 1e-12);
  EXPECT_NEAR(chrf("ban\u00A0ana", "band\u3000ana"), expected, 1e-12);
  // Epsilon smoothing averages the per-order F2 instead: f1 = 5(6/7)/(4 + 6/7) = 15/17,
  // f2 = 5(8/15)/(16/5 + 2/3) = 20/29, f3 = 5(1/5)/(2 + 2/5) = 5/12, f4..f6 = 1e-16.
  EXPECT_NEAR(chrf_eps("banana", "bandana"), 100.0 * (15.0 / 17 + 20.0 / 29 + 5.0 / 12) / 6, 1e-12);
}

TEST(Chrf, OrdersMissingOnOneSideAreLeftOut) {
  // "abc." against "abc": n = 1: P 3/4, R 1; n = 2: P 2/3, R 1; n = 3: P 1/2, R 1; the reference
  // has no 4-gram, so n = 4 is not effective even though the candidate has one.
  // P = 23/36, R = 1: chrF = 100 * 5 (23/36) / (92/36 + 1) = 100 * 115/128.
  EXPECT_DOUBLE_EQ(chrf("abc.", "abc"), 100.0 * 115 / 128);
  // A zero-width space is not whitespace: "a<ZWSP>b" has 3 characters. n = 1: P 2/3, R 1;
  // n = 2: P 0, R 0; P = 1/3, R = 1/2: chrF = 100 * (5/6) / (11/6) = 100 * 5/11.
  EXPECT_NEAR(chrf("a\u200Bb", "ab"), 100.0 * 5 / 11, 1e-12);
}

TEST(Chrf, PublishedSacrebleuTests) {
  // mjpost/sacrebleu test/test_chrf.py, test_chrf_sentence_level: sentence_chrf with
  // eps_smoothing=True and the other defaults (beta 2, char order 6), printed to 8 decimals.
  EXPECT_NEAR(chrf_eps("Co nás nejvíc trápí, protože lékaři si vybírají, kdo bude žít a kdo zemře.",
                       "Nejvíce smutní jsme z toho, že musíme rozhodovat o tom, kdo bude žít a kdo zemře."),
              39.14078509, 1e-8);
  EXPECT_NEAR(chrf_eps("Nebo prostě nemají vybavení, které by jim pomohlo, uvedli lékaři.",
                       "A někdy nemáme ani potřebný materiál, abychom jim pomohli, popsali lékaři."),
              31.22557079, 1e-8);
  EXPECT_NEAR(chrf_eps("Lapali po dechu, jejich životy skončily dřív, než skutečně začaly.",
                       "Lapali po dechu a pak jejich život skončil - dřív, než skutečně mohl začít, "
                       "připomněli."),
              57.15704367, 1e-8);
  // test_cases_effective_order (the default smoothing) and test_cases (eps_smoothing=True), the
  // single-sentence ones that do not depend on beta (they run with beta 3): in each, P = R at
  // every effective order, and F-beta of P = R is P for any beta.
  EXPECT_DOUBLE_EQ(chrf("a", "a"), 100.0);
  EXPECT_EQ(chrf("", "reference"), 0.0);
  EXPECT_DOUBLE_EQ(chrf("a b c", "abc"), 100.0);
  EXPECT_EQ(chrf("", "c"), 0.0);
  EXPECT_DOUBLE_EQ(chrf("aa", "ab"), 25.0);
  EXPECT_NEAR(chrf_eps("abcdefg", "hijklmnop"), 0.0, 1e-4);
  EXPECT_NEAR(chrf_eps("a", "b"), 0.0, 1e-4);
  EXPECT_NEAR(chrf_eps("aa", "ab"), 8.3333, 1e-4);
  EXPECT_NEAR(chrf_eps("a", "a"), 16.6667, 1e-4);
  EXPECT_NEAR(chrf_eps("a b c", "a b c"), 50.0, 1e-4);
  EXPECT_NEAR(chrf_eps("a b c", "abc"), 50.0, 1e-4);
  EXPECT_NEAR(
      chrf_eps("Niemand hat die Absicht, eine Mauer zu errichten", "Niemand hat die Absicht, eine Mauer zu errichten"),
      100.0, 1e-4);
}

TEST(Chrf, Empty) {
  EXPECT_EQ(chrf("", ""), 0.0);
  EXPECT_EQ(chrf("a", ""), 0.0);
  EXPECT_EQ(chrf("", "a"), 0.0);
  EXPECT_EQ(chrf(" \t\n", " "), 0.0);  // nothing but whitespace is empty
}

TEST(Chrf, CaseAndPunctuationCount) {
  EXPECT_EQ(chrf("ABC", "abc"), 0.0);
  // "Ab" against "ab": n = 1: b matches, P = R = 1/2; n = 2: none. P = R = 1/4: 25.
  EXPECT_DOUBLE_EQ(chrf("Ab", "ab"), 25.0);
  EXPECT_LT(chrf("hello, world!", "hello world"), 100.0);
}

TEST(Chrf, Utf8CodePoints) {
  // "日本" against "日本語" (3 bytes a character): n = 1: P 2/2, R 2/3; n = 2: P 1/1, R 1/2;
  // n = 3: the candidate has none. P = 1, R = 7/12: chrF = 100 * (35/12) / (55/12) = 100 * 7/11.
  // Over bytes it would be 6 against 9 "characters" and a different score.
  EXPECT_NEAR(chrf("日本", "日本語"), 100.0 * 7 / 11, 1e-12);
  // é (C3 A9) and è (C3 A8) share a byte but no character.
  EXPECT_EQ(chrf("é", "è"), 0.0);
  EXPECT_DOUBLE_EQ(chrf("Ünïcödé 😀", "Ünïcödé😀"), 100.0);
  // Precomposed é is not e + U+0301 (no normalisation): n = 1 matches nothing.
  EXPECT_EQ(chrf("é", "e\u0301"), 0.0);
}

TEST(Chrf, InvalidBytesAreOneCharacterEach) {
  EXPECT_DOUBLE_EQ(chrf("\xff", "\xff"), 100.0);
  EXPECT_EQ(chrf("\xff", "\xfe"), 0.0);      // not all one replacement character
  EXPECT_EQ(chrf("\xc3", "\xc3\xa9"), 0.0);  // a truncated é is not é
  // "\x80\x80" against "\x80": n = 1: P 1/2, R 1; n = 2: the reference has none.
  // chrF = 100 * 5 (1/2) / (2 + 1) = 100 * 5/6.
  EXPECT_NEAR(chrf("\x80\x80", "\x80"), 100.0 * 5 / 6, 1e-12);
  // An encoded surrogate (ED A0 80, ill-formed) is three invalid bytes, not U+D800: n = 1 gives
  // P 1/3, R 1, and the reference has no 2-gram: chrF = 100 * (5/3) / (7/3) = 100 * 5/7.
  EXPECT_NEAR(chrf("\xed\xa0\x80", "\xed"), 100.0 * 5 / 7, 1e-12);
  // A raw A0 byte is not the NBSP character C2 A0, so it is not removed as whitespace.
  EXPECT_DOUBLE_EQ(chrf("a\xc2\xa0"
                        "b",
                        "ab"),
                   100.0);
  EXPECT_LT(chrf("a\xa0"
                 "b",
                 "ab"),
            100.0);
}

// ---- corpus mean ----

TEST(MeanSentenceScore, AveragesSentenceScores) {
  const std::vector<std::string> candidates{"a b", "x", "banana"};
  const std::vector<std::string> references{"a b", "y", "bandana"};
  EXPECT_DOUBLE_EQ(mean_sentence_score(candidates, references, rouge_l_f1), (1.0 + 0.0 + 0.0) / 3);
  EXPECT_NEAR(mean_sentence_score(candidates, references, chrf), (100.0 + 0.0 + 100.0 * 2323 / 7008) / 3, 1e-12);
  EXPECT_NEAR(mean_sentence_score(candidates, references, chrf_eps),
              (chrf_eps("a b", "a b") + 0.0 + chrf_eps("banana", "bandana")) / 3, 1e-12);
}

TEST(MeanSentenceScore, RejectsMismatchedOrEmptyInput) {
  const std::vector<std::string> two{"a", "b"}, three{"a", "b", "c"};
  try {
    mean_sentence_score(two, three, rouge_l_f1);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("2 candidates"), std::string::npos) << message;
    EXPECT_NE(message.find("3 references"), std::string::npos) << message;
  }
  EXPECT_THROW(mean_sentence_score({}, {}, chrf), std::invalid_argument);
}

TEST(Metrics, WordCountSplitsOnWhitespaceOnly) {
  EXPECT_EQ(tldr::word_count(""), 0u);
  EXPECT_EQ(tldr::word_count("   \t\n"), 0u);
  EXPECT_EQ(tldr::word_count("one"), 1u);
  EXPECT_EQ(tldr::word_count("  library for\tXML-parsing\n(C++)  "), 4u);
}
