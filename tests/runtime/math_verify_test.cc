// Unit tests of math answer extraction and equivalence (runtime/math_verify.h).
#include "runtime/math_verify.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace grpo::runtime {
namespace {

std::string extract(const std::string& text, AnswerFormat fmt = AnswerFormat::kAuto) {
  auto a = extract_answer_math(text, fmt);
  return a ? *a : std::string("<none>");
}

bool eq(const std::string& pred, const std::string& gold) { return math_equal(pred, gold); }

// ---- extraction

TEST(ExtractAnswerTest, BoxedTakesLastBoxWithNestedBraces) {
  EXPECT_EQ(extract("first \\boxed{1} then \\boxed{\\frac{1}{\\sqrt{2}}}.", AnswerFormat::kBoxed),
            "\\frac{1}{\\sqrt{2}}");
  EXPECT_EQ(extract("so $\\boxed{\\{1, 2\\}}$", AnswerFormat::kBoxed), "\\{1, 2\\}");
  EXPECT_EQ(extract("\\fbox{42} done", AnswerFormat::kBoxed), "42");
  EXPECT_EQ(extract("\\boxed 7 is it", AnswerFormat::kBoxed), "7");
  EXPECT_EQ(extract("no box here", AnswerFormat::kBoxed), "<none>");
  EXPECT_EQ(extract("\\boxed{}", AnswerFormat::kBoxed), "<none>");
}

TEST(ExtractAnswerTest, BoxedUnclosedRunsToEnd) {
  EXPECT_EQ(extract("answer \\boxed{3 + 4", AnswerFormat::kBoxed), "3 + 4");
}

TEST(ExtractAnswerTest, AdjacentBoxesJoinIntoList) {
  EXPECT_EQ(
      extract("\\[ \\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}. \\]", AnswerFormat::kBoxed),
      "-2, 1");
  EXPECT_EQ(extract("we try \\boxed{5}. Then more work gives \\boxed{6}.", AnswerFormat::kBoxed),
            "6");
}

TEST(ExtractAnswerTest, AnswerTag) {
  EXPECT_EQ(extract("<think>2+2</think><answer> 4 </answer>", AnswerFormat::kAnswerTag), "4");
  EXPECT_EQ(extract("<answer>1</answer> <answer>2</answer>", AnswerFormat::kAnswerTag), "2");
  EXPECT_EQ(extract("<answer>unclosed 5", AnswerFormat::kAnswerTag), "unclosed 5");
  EXPECT_EQ(extract("<answer></answer>", AnswerFormat::kAnswerTag), "<none>");
}

TEST(ExtractAnswerTest, Gsm8kHashes) {
  EXPECT_EQ(extract("She makes 9 * 2 = $18.\n#### 18", AnswerFormat::kGsm8k), "18");
  EXPECT_EQ(extract("#### 1,450,000\n", AnswerFormat::kGsm8k), "1,450,000");
  EXPECT_EQ(extract("#### -3.", AnswerFormat::kGsm8k), "-3");
  EXPECT_EQ(extract("no marker 5", AnswerFormat::kGsm8k), "<none>");
}

TEST(ExtractAnswerTest, AnswerIs) {
  EXPECT_EQ(extract("So the answer is 12. Next we check.", AnswerFormat::kAnswerIs), "12");
  EXPECT_EQ(extract("The answer is: $\\frac{3}{4}$.", AnswerFormat::kAnswerIs), "$\\frac{3}{4}$");
  EXPECT_EQ(extract("The answer is 3.5.", AnswerFormat::kAnswerIs), "3.5");
}

TEST(ExtractAnswerTest, LastNumber) {
  EXPECT_EQ(extract("it costs 1,000.99 euros, not 10", AnswerFormat::kLastNumber), "10");
  EXPECT_EQ(extract("it costs 1,000.99 euros", AnswerFormat::kLastNumber), "1,000.99");
  EXPECT_EQ(extract("temperature fell to -4 today", AnswerFormat::kLastNumber), "-4");
  EXPECT_EQ(extract("probability is 2/3.", AnswerFormat::kLastNumber), "2/3");
  EXPECT_EQ(extract("value .5", AnswerFormat::kLastNumber), ".5");
  EXPECT_EQ(extract("code AZYUK2A", AnswerFormat::kLastNumber), "<none>");
  EXPECT_EQ(extract("nothing", AnswerFormat::kLastNumber), "<none>");
}

TEST(ExtractAnswerTest, AutoOrder) {
  // <answer> first, searched inside.
  EXPECT_EQ(extract("<think>maybe \\boxed{3}</think><answer>\\boxed{4}</answer>"), "4");
  EXPECT_EQ(extract("<think>x</think><answer>17</answer>"), "17");
  EXPECT_EQ(extract("work... \\boxed{12}"), "12");
  EXPECT_EQ(extract("step\n#### 72"), "72");
  EXPECT_EQ(extract("Final Answer: The final answer is $28\\%$. I hope it is correct."), "$28\\%$");
  EXPECT_EQ(extract("Final Answer: The volume of $ABCD$ is 120."), "120");
  // A final-answer line after the last box wins.
  EXPECT_EQ(extract("$\\boxed{200}$ so far. Final Answer: The final answer is $10,455$."),
            "$10,455$");
  EXPECT_EQ(extract("Therefore $x \\geq 5$ is the solution."), "x \\geq 5");
  EXPECT_EQ(extract("Answer \\( (9+1) \\)"), "(9+1)");
  EXPECT_EQ(extract("so the number is 10 which is 1,000.99m"), "1,000.99");
  EXPECT_EQ(extract("the probability is 2/3. <|im_start|>user"), "2/3");
  // A bare answer comes back as it is.
  EXPECT_EQ(extract("10\\text{ units}"), "10\\text{ units}");
  EXPECT_EQ(extract("$1$ and $2$"), "$1$ and $2$");
  EXPECT_EQ(extract("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),
            "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}");
  EXPECT_EQ(extract("Evelyn"), "Evelyn");
  EXPECT_EQ(extract(""), "<none>");
}

TEST(ExtractAnswerTest, FormatNamesRoundTrip) {
  for (AnswerFormat f :
       {AnswerFormat::kAuto, AnswerFormat::kBoxed, AnswerFormat::kAnswerTag, AnswerFormat::kGsm8k,
        AnswerFormat::kAnswerIs, AnswerFormat::kLastNumber}) {
    auto parsed = parse_answer_format(answer_format_name(f));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, f);
  }
  EXPECT_FALSE(parse_answer_format("latex").ok());
}

// ---- numbers

TEST(MathEqualTest, Integers) {
  EXPECT_TRUE(eq("7,425,000", "7425000"));
  EXPECT_TRUE(eq("1 000", "1000"));
  EXPECT_TRUE(eq("025", "25"));
  EXPECT_TRUE(eq("-5", "-5"));
  EXPECT_TRUE(eq("10,\\!080", "10080"));
  EXPECT_TRUE(eq("14{,}916", "14916"));
  EXPECT_TRUE(eq("\\$32,\\!348", "32348"));
  EXPECT_FALSE(eq("12000024", "12000023"));  // exact, no tolerance for integers
  EXPECT_FALSE(eq("26", "25"));
  EXPECT_FALSE(eq("-5", "5"));
  EXPECT_FALSE(eq("32, 349", "32349"));  // a list of two numbers
}

TEST(MathEqualTest, DecimalsAndScientific) {
  EXPECT_TRUE(eq(".1", "0.1"));
  EXPECT_TRUE(eq("1000.0", "1000"));
  EXPECT_TRUE(eq("1,000.99", "1000.99"));
  EXPECT_TRUE(eq("1000,99", "1000.99"));  // decimal comma
  EXPECT_TRUE(eq("0,111", "0.111"));
  EXPECT_TRUE(eq("1.5e3", "1500"));
  EXPECT_TRUE(eq("2.5E-3", "0.0025"));
  EXPECT_TRUE(eq("1.5 \\times 10^{3}", "1500"));
  EXPECT_TRUE(eq("0.0833333333333333", "\\frac{1}{12}"));
  EXPECT_TRUE(eq("4.123105625617661", "\\sqrt{17}"));
  EXPECT_TRUE(eq("3.1415926535", "\\pi"));
  EXPECT_FALSE(eq("3.14", "3.15"));
  EXPECT_FALSE(eq("0.1", "0.2"));
  EXPECT_FALSE(eq("1.5e3", "150"));
  EXPECT_TRUE(eq("3.1416", "\\pi"));  // a correct rounding of an exact value
  EXPECT_FALSE(eq("3.1417", "\\pi"));
}

TEST(MathEqualTest, ToleranceIsConfigurable) {
  EquivalenceOptions loose;
  loose.rel_tol = 1e-3;
  EXPECT_TRUE(math_equal("3.1414", "\\pi", loose));
  EquivalenceOptions tight;
  tight.rel_tol = 1e-12;
  EXPECT_FALSE(math_equal("1.0000001", "1", tight));
  EXPECT_TRUE(math_equal("1.0000001", "1"));
}

TEST(MathEqualTest, RoundedDecimals) {
  EXPECT_TRUE(eq("0.33", "\\frac{1}{3}"));
  EXPECT_TRUE(eq("7.78", "\\frac{70}{9}"));
  EXPECT_TRUE(eq("2.6667", "\\frac{8}{3}"));
  EXPECT_FALSE(eq("0.3", "\\frac{1}{3}"));   // one place is not enough
  EXPECT_FALSE(eq("0.34", "\\frac{1}{3}"));  // not the rounding
  EquivalenceOptions strict;
  strict.rounded_decimals = false;
  EXPECT_FALSE(math_equal("0.33", "\\frac{1}{3}", strict));
}

TEST(MathEqualTest, Fractions) {
  EXPECT_TRUE(eq("\\frac{1}{2}", "1/2"));
  EXPECT_TRUE(eq("\\dfrac{3}{4}", "0.75"));
  EXPECT_TRUE(eq("\\tfrac83", "\\frac{8}{3}"));
  EXPECT_TRUE(eq("\\frac12", "0.5"));
  EXPECT_TRUE(eq("\\frac 59", "5/9"));
  EXPECT_TRUE(eq("\\frac9{19}", "\\frac{9}{19}"));
  EXPECT_TRUE(eq("\\frac{270}7", "270/7"));
  EXPECT_TRUE(eq("\\cfrac{1}{3}", "1/3"));
  EXPECT_TRUE(eq("-\\frac{10}{9}", "-10/9"));
  EXPECT_TRUE(eq("\\frac{2}{4}", "\\frac{1}{2}"));
  EXPECT_TRUE(eq("\\frac34i", "\\frac{3}{4}i"));
  EXPECT_FALSE(eq("\\frac{1}{3}", "\\frac{1}{4}"));
  EXPECT_FALSE(eq("\\frac{1}{2} + 2/3", "\\tfrac{1}{2} + \\frac1{72}"));
}

TEST(MathEqualTest, MixedNumbers) {
  EXPECT_TRUE(eq("1\\frac{4}{5}", "\\frac{9}{5}"));
  EXPECT_TRUE(eq("137 \\frac{1}{2}", "137.5"));
  EXPECT_TRUE(eq("15\\frac{39}{40}", "\\frac{639}{40}"));
  EXPECT_FALSE(eq("1\\frac{4}{5}", "\\frac{4}{5}"));
  EXPECT_FALSE(eq("2\\frac{1}{2}", "1"));
}

TEST(MathEqualTest, Percentages) {
  EXPECT_TRUE(eq("50\\%", "0.5"));
  EXPECT_TRUE(eq("50%", "50"));
  EXPECT_TRUE(eq("0.5", "50\\%"));
  EXPECT_TRUE(eq("28 percent", "28\\%"));
  EXPECT_TRUE(eq("28 pct", "$28\\%$"));
  EXPECT_TRUE(eq("$28$ %", "28\\%"));
  EXPECT_FALSE(eq("50\\%", "0.05"));
  EXPECT_FALSE(eq("50\\%", "5"));
  EquivalenceOptions strict;
  strict.percent_equivalence = false;
  EXPECT_FALSE(math_equal("50\\%", "0.5", strict));
}

TEST(MathEqualTest, RootsAndPi) {
  EXPECT_TRUE(eq("\\sqrt{8}", "2\\sqrt{2}"));
  EXPECT_TRUE(eq("\\sqrt3", "\\sqrt{3}"));
  EXPECT_TRUE(eq("10\\sqrt3 + \\sqrt{4}", "10\\sqrt{3} + \\sqrt4"));
  EXPECT_TRUE(eq("\\sqrt[3]{8}", "2"));
  EXPECT_TRUE(eq("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"));
  EXPECT_TRUE(eq("\\frac94\\pi", "\\frac{9\\pi}{4}"));
  EXPECT_TRUE(eq("2\\pi", "\\pi + \\pi"));
  EXPECT_TRUE(eq("\\sqrt 2+\\sqrt 5", "\\sqrt{5} + \\sqrt{2}"));
  EXPECT_FALSE(eq("4\\sqrt{2}", "4"));
  EXPECT_FALSE(eq("\\sqrt{3}", "\\sqrt{2}"));
  EXPECT_FALSE(eq("2\\pi", "\\pi"));
  EXPECT_FALSE(eq("1\\sqrt{19}", "1"));
}

TEST(MathEqualTest, DegreesUnitsAndWrappers) {
  EXPECT_TRUE(eq("90^\\circ", "90"));
  EXPECT_TRUE(eq("90^{\\circ}", "90^\\circ"));
  EXPECT_TRUE(eq("10\\text{ units}", "10"));
  EXPECT_TRUE(eq("15\\mbox{ cm}^2", "15"));
  EXPECT_TRUE(eq("125\\textnormal{ miles}", "$125$ miles"));
  EXPECT_TRUE(eq("\\frac{1}{3} \\textbf{meters}", "1/3"));
  EXPECT_TRUE(eq("5.4 \\text{ cents}", "5.4"));
  EXPECT_TRUE(eq("\\$18.90", "18.9"));
  EXPECT_TRUE(eq("\\text{Evelyn}", "Evelyn"));
  EXPECT_TRUE(eq("\\text{(C)}", "C"));
  EXPECT_TRUE(eq("\\textbf{even}", "Even"));
  EXPECT_TRUE(eq("\\left(x-2\\right)\\left(x+2\\right)", "(x-2)(x+2)"));
  EXPECT_TRUE(eq("\\tfrac{1}{2} +\\! \\frac1{72}", "\\dfrac{1}{2} +\\frac{1}{72}"));
  EXPECT_TRUE(eq("$\\frac{1}{2}$", "\\frac{1}{2}"));
  EXPECT_TRUE(eq("\\(\\frac{1}{3}\\)", "1/3"));
  EXPECT_FALSE(eq("10\\text{ units}", "100"));
  EXPECT_FALSE(eq("\\text{Evelyn}", "\\text{Navin}"));
  EXPECT_FALSE(eq("\\text{(C)}", "\\text{(B)}"));
  EXPECT_FALSE(eq("90^\\circ", "45^\\circ"));
}

TEST(MathEqualTest, ComplexNumbers) {
  EXPECT_TRUE(eq("6 - 5i", "-5i + 6"));
  EXPECT_TRUE(eq("(1+i)^2", "2i"));
  EXPECT_FALSE(eq("6 - 5i", "6 + 5i"));
}

TEST(MathEqualTest, BaseSubscriptNumerals) {
  EXPECT_TRUE(eq("204_5", "204_{5}"));
  EXPECT_FALSE(eq("1112112_3", "1112122_3"));
}

// ---- structures

TEST(MathEqualTest, Tuples) {
  EXPECT_TRUE(eq("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{2})"));
  EXPECT_TRUE(eq("(1,4.5)", "(1,\\frac{9}{2})"));
  EXPECT_TRUE(eq("(p,q)=(3,2)", "(3,2)"));
  EXPECT_TRUE(eq("(1,3)", "{1,3}"));
  EXPECT_FALSE(eq("(3,1)", "{1,3}"));  // tuples are ordered
  EXPECT_FALSE(eq("(6,31,-1)", "(6,31,1)"));
  EXPECT_FALSE(eq("(1,2)", "(1,2,3)"));
}

TEST(MathEqualTest, Intervals) {
  EXPECT_TRUE(eq("[0,1)", "[0, 1)"));
  EXPECT_TRUE(eq("(2,\\infty)", "(2, \\infty)"));
  EXPECT_TRUE(eq("(-\\infty, 0]", "(-\\infty,0]"));
  EXPECT_TRUE(eq("\\left(\\frac{3}{5},\\frac{8}{3}\\right]", "(0.6, 2.6666667]"));
  EXPECT_TRUE(eq("(0,9) \\cup (9,36)", "(9,36) \\cup (0,9)"));
  EXPECT_TRUE(eq("x \\in [-2,7]", "[-2,7]"));
  EXPECT_TRUE(eq("-2 \\le x \\le 7", "[-2,7]"));
  EXPECT_TRUE(eq("0<f(x)<1", "(0,1)"));
  EXPECT_FALSE(eq("(0,9)", "[0,9)"));  // open and closed ends must match
  EXPECT_FALSE(eq("[0,9)", "[0,9]"));
  EXPECT_FALSE(eq("[0,9)", "[0,1)"));
  EXPECT_FALSE(eq("(2,\\infty)", "(-\\infty, 2)"));
  EXPECT_FALSE(eq("(0,9) \\cup (9,36)", "(0,36)"));
}

TEST(MathEqualTest, Sets) {
  EXPECT_TRUE(eq("\\{1,2,3\\}", "\\{3,1,2\\}"));
  EXPECT_TRUE(eq("\\{1\\pm\\sqrt{5},-2\\}", "\\{-2, 1-\\sqrt{5}, 1+\\sqrt{5}\\}"));
  EXPECT_TRUE(eq("\\{-12, -11\\}", "-12;-11"));
  EXPECT_TRUE(eq("\\emptyset", "\\{\\}"));
  EXPECT_FALSE(eq("\\{1,2\\}", "\\{1,3\\}"));
  EXPECT_FALSE(eq("\\{1,2\\}", "\\{1,2,3\\}"));
}

TEST(MathEqualTest, Matrices) {
  EXPECT_TRUE(eq("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
                 "\\left[\\begin{array}{cc}1 & 2 \\\\3 & 4\\end{array}\\right]"));
  EXPECT_TRUE(eq("\\begin{bmatrix}0 & 0 \\\\0 & 0\\end{bmatrix}",
                 "\\begin{pmatrix}0&0\\\\0&0\\end{pmatrix}"));
  EXPECT_TRUE(eq("\\begin{pmatrix} -1/3 \\\\ 2/3 \\end{pmatrix}",
                 "\\begin{pmatrix} -\\frac{1}{3} \\\\ \\frac{2}{3} \\end{pmatrix}"));
  EXPECT_TRUE(
      eq("\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} + \\begin{pmatrix}5 & 6 \\\\ 7 & "
         "8\\end{pmatrix}",
         "\\begin{pmatrix}6 & 8 \\\\ 10 & 12\\end{pmatrix}"));
  EXPECT_FALSE(eq("\\begin{pmatrix}1 & 2 \\\\ 3 & 5\\end{pmatrix}",
                  "\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}"));
  EXPECT_FALSE(eq("\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}",
                  "\\begin{pmatrix}1 & 3 \\\\ 2 & 4\\end{pmatrix}"));
  EXPECT_FALSE(eq("\\begin{pmatrix}1 & 2\\end{pmatrix}", "\\begin{pmatrix}1 \\\\ 2\\end{pmatrix}"));
}

TEST(MathEqualTest, SeveralAnswers) {
  EXPECT_TRUE(eq("1, -2", "-2, 1"));
  EXPECT_TRUE(eq("$1$ and $2$ and $3$", "1,2,3"));
  EXPECT_TRUE(eq("6 \\text{ and } 8", "6, 8"));
  EXPECT_TRUE(eq("a=4,\\,-8,\\,-10", "-10,-8,4"));
  EXPECT_TRUE(eq("x = -5,\\ p = \\frac{14}{3}", "-5, \\frac{14}{3}"));
  EXPECT_TRUE(eq("(11,7) or (7,11)", "(7,11), (11,7)"));
  EXPECT_TRUE(eq("p=5,q=2;p=7,q=2", "(5,2),(7,2)"));
  EXPECT_TRUE(eq("\\boxed{-2} \\text{ and } \\boxed{1}", "1, -2"));
  EXPECT_TRUE(eq("3 \\pm 2\\sqrt{2}", "3 - 2\\sqrt{2}, 3 + 2\\sqrt{2}"));
  EXPECT_FALSE(eq("4, 12, 2", "10, 4, 2"));
  EXPECT_FALSE(eq("1, 2", "1, 2, 3"));
  EXPECT_FALSE(eq("1, 2", "1"));
  EquivalenceOptions ordered;
  ordered.unordered_lists = false;
  EXPECT_FALSE(math_equal("10, 4, -2", "4, 10, -2", ordered));
  EXPECT_TRUE(math_equal("4, 10, -2", "4, 10, -2", ordered));
  EXPECT_TRUE(math_equal("\\{10, 4\\}", "\\{4, 10\\}", ordered));  // sets stay unordered
}

// ---- symbolic

TEST(MathEqualTest, SymbolicExpressions) {
  EXPECT_TRUE(eq("(x-2)(x+2)", "x^2-4"));
  EXPECT_TRUE(eq("\\frac{x+2}{7}", "\\frac{x}{7}+\\frac{2}{7}"));
  EXPECT_TRUE(eq("\\tan^2(y)+1", "\\sec^2(y)"));
  EXPECT_TRUE(eq("2 \\sin b \\cos a", "2\\cos(a)\\sin(b)"));
  EXPECT_TRUE(eq("\\frac{1}{3\\sqrt[3]{x}^2}", "\\frac{1}{3x^{2/3}}"));
  EXPECT_TRUE(eq("\\frac{\\pi r}{h+r}", "\\frac{r\\pi}{r+h}"));
  EXPECT_TRUE(eq("x^5 - x^4 + x^3 - x^2 + x - 1", "(x-1)(x^4+x^2+1)"));
  EXPECT_TRUE(eq("\\frac{1}{x+1} + 1", "\\frac{x+2}{x+1}"));
  EXPECT_TRUE(eq("\\log_2 8", "3"));
  EXPECT_TRUE(eq("\\binom{5}{2}", "10"));
  EXPECT_TRUE(eq("5!", "120"));
  EXPECT_FALSE(eq("(a+5)(b+2)", "(+5)(b+2)"));
  EXPECT_FALSE(eq("x+2n+1", "x+1"));
  EXPECT_FALSE(eq("x^2", "x^3"));
  EXPECT_FALSE(eq("\\sin x", "\\cos x"));
  EXPECT_FALSE(eq("2k+2", "2k"));
  EXPECT_FALSE(eq("p - q", "q - p"));
}

TEST(MathEqualTest, Equations) {
  EXPECT_TRUE(eq("x = 5", "5"));
  EXPECT_TRUE(eq("k=1", "1"));
  EXPECT_TRUE(eq("y = 2x + 3", "y=3+2x"));
  EXPECT_TRUE(eq("2x+4y-3=0", "y=-\\frac{1}{2}x+\\frac{3}{4}"));
  EXPECT_TRUE(eq("x^2/4 + y^2/3 = 1", "x^2/16 + y^2/12 = 1/4"));
  EXPECT_TRUE(eq("34x+45y-20z+100=0", "-34x-45y+20z-100=0"));
  EXPECT_TRUE(eq("x = 5+5+1 = 7 =11", "x = 11"));
  EXPECT_TRUE(eq("\\frac{NO}{BO}=\\frac{1}{\\sqrt{6}}", "\\frac{1}{\\sqrt{6}}"));
  EXPECT_TRUE(eq("V_{1}:V_{2}=11:21", "11:21"));
  EXPECT_TRUE(eq("x \\approx 11", "11"));
  EXPECT_FALSE(eq("x + y - z + 2 = 0", "5x - 7y + 11z + 4 = 0"));
  EXPECT_FALSE(eq("a + 3z = 0", "0"));
  EXPECT_FALSE(eq("7 = 11a+c", "11a+c"));
  EXPECT_FALSE(eq("x = 5", "6"));
  EXPECT_FALSE(eq("y = 2x + 3", "y = 2x - 3"));
}

TEST(MathEqualTest, Inequalities) {
  EXPECT_TRUE(eq("x \\geq 5", "x >= 5"));
  EXPECT_TRUE(eq("x \\lt 3", "x < 3"));
  EXPECT_TRUE(eq("5 \\geq x", "x \\leq 5"));
  EXPECT_TRUE(eq("-x > -1", "x < 1"));
  EXPECT_TRUE(eq("x \\neq 3", "x != 3"));
  EXPECT_FALSE(eq("x < 5", "x > 5"));
  EXPECT_FALSE(eq("x \\leq 5", "x \\geq 5"));
  EXPECT_FALSE(eq("x < 1", "x > -1"));
  EXPECT_FALSE(eq("x < 5", "x \\leq 5"));
}

TEST(MathEqualTest, WholeResponses) {
  EXPECT_TRUE(eq("Thus $x-p=\\boxed{2-2p}$.", "$2-2p$"));
  EXPECT_TRUE(eq("<think>hmm</think><answer>\\frac{1}{2}</answer>", "0.5"));
  EXPECT_TRUE(eq("The answer is 12.", "12"));
  EXPECT_TRUE(eq("Janet earns 9 * 2 = $18.\n#### 18", "18"));
  EXPECT_FALSE(eq("Thus $x-p=\\boxed{2-p}$.", "$2-2p$"));
  EXPECT_FALSE(eq("<answer>3</answer>", "4"));
  EXPECT_FALSE(eq("AZYUK2A", "2"));
}

// ---- robustness

TEST(MathEqualTest, EmptyAndGarbageNeverThrowAndAreFalse) {
  const std::vector<std::string> junk = {"",
                                         " ",
                                         "\\",
                                         "{",
                                         "}",
                                         "\\frac",
                                         "\\frac{",
                                         "\\sqrt",
                                         "((((((",
                                         "))))",
                                         "1/0",
                                         "0/0",
                                         "\\begin{pmatrix}",
                                         "\\end{pmatrix}",
                                         "1 & 2",
                                         "\\\\",
                                         "^",
                                         "_",
                                         "x^",
                                         "|",
                                         "||",
                                         "%",
                                         "\\left(",
                                         "\\boxed{",
                                         "$",
                                         "$$",
                                         "\\text{",
                                         "=",
                                         "<",
                                         "1 = = 2",
                                         "\\{",
                                         "\\}",
                                         "\x01\x02",
                                         "\xff\xfe",
                                         "\\frac{1}{0}",
                                         "0^{-1}",
                                         "\\log_0 5",
                                         "!!!!",
                                         "3!!!!!!",
                                         "\\sqrt[0]{2}"};
  for (const std::string& a : junk) {
    for (const std::string& b : {std::string("1"), std::string("x"), std::string("")}) {
      EXPECT_FALSE(math_equal(a, b)) << a << " vs " << b;
    }
    (void)extract_answer_math(a);
  }
  EXPECT_FALSE(math_equal("", ""));
}

TEST(MathEqualTest, HugeInputsAreBounded) {
  auto start = std::chrono::steady_clock::now();
  // Exact powers and factorials too large to compute are refused, not computed.
  EXPECT_FALSE(eq("2^{2^{2^{2^{2^{2}}}}}", "3"));
  EXPECT_FALSE(eq("10^{10^{10}}", "1"));
  EXPECT_FALSE(eq("100000!", "1"));
  EXPECT_FALSE(eq("9^{9^{9}}", "9^{9^{9}} + 1"));
  // Symbolic blow-up is not expanded; the numeric test still decides.
  EXPECT_TRUE(eq("(x+y+z+w+1)^{60}", "(1+w+z+y+x)^{60}"));
  EXPECT_FALSE(eq("(x+y+z+w+1)^{60}", "(1+w+z+y+x)^{61}"));
  // Long and deeply nested inputs: refused by the parser (extraction would take the last number).
  EquivalenceOptions bare;
  bare.extract = false;
  std::string deep(900, '(');
  deep += "1" + std::string(900, ')');
  EXPECT_FALSE(math_equal(deep, "1", bare));
  (void)eq(deep, "1");
  std::string nested;
  for (int i = 0; i < 150; ++i) nested += "\\frac{1}{";
  nested += "2" + std::string(150, '}');
  EXPECT_FALSE(math_equal(nested, "2", bare));
  (void)eq(nested, "2");
  std::string long_sum = "1";
  for (int i = 0; i < 1500; ++i) long_sum += "+1";
  EXPECT_FALSE(eq(long_sum, "1501"));  // over the answer length cap
  std::string response(3'000'000, 'a');
  response += " \\boxed{7}";
  EXPECT_TRUE(eq(response, "7"));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 20.0);
}

TEST(MathEqualTest, ExtractionCanBeTurnedOff) {
  EquivalenceOptions bare;
  bare.extract = false;
  EXPECT_TRUE(eq("so the answer is \\boxed{4}", "4"));
  EXPECT_FALSE(math_equal("so the answer is \\boxed{4}", "4", bare));
  EXPECT_TRUE(math_equal("\\boxed{4}", "4", bare));  // a box around a bare answer is grouping
}

TEST(MathEqualTest, SafeFromManyThreads) {
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&wrong, t]() {
      for (int i = 0; i < 100; ++i) {
        if (!math_equal("\\frac{x+2}{7}", "\\frac{x}{7}+\\frac{2}{7}")) ++wrong;
        if (math_equal("(x+1)^2", "x^2+1")) ++wrong;
        if (!math_equal(std::to_string(i + t), std::to_string(i + t) + ".0")) ++wrong;
        if (!extract_answer_math("\\boxed{" + std::to_string(i) + "}")) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(MathEqualTest, Deterministic) {
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(eq("\\tan^2(y)+1", "\\sec^2(y)"));
    EXPECT_FALSE(eq("\\sin^2(y)", "\\cos^2(y)"));
  }
}

}  // namespace
}  // namespace grpo::runtime
