// The Python module `brain._brain`: brain's LibTorch backend for PyTorch users. Tensors cross as
// at::Tensor (no copy), so autograd works through brain_loss, surrogate_loss and the log-prob
// operations as in C++. Every std::invalid_argument brain throws surfaces as ValueError with the
// C++ message (pybind11's default translation).

#include <brain/backends/torch/log_probs.hpp>
#include <brain/loss.hpp>

#include <torch/csrc/utils/pybind.h>  // at::Tensor <-> torch.Tensor

#include <pybind11/stl.h>

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

namespace py = pybind11;
using Tensor = at::Tensor;

namespace {

using goodness_model = std::variant<brain::bradley_terry, brain::logistic, brain::log_goodness>;

[[noreturn]] void bad_choice(const char* where, const char* argument, const std::string& got, const char* choices) {
  brain::detail::fail(where, argument, " = \"", got, "\" must be one of ", choices);
}

// beta belongs to the Bradley-Terry model (log g = r / beta, eq. 21); the others take none.
goodness_model make_goodness(const char* where, const std::string& name, double beta) {
  if (name == "bradley_terry") return brain::bradley_terry{.beta = beta};
  if (beta != 1.0)
    brain::detail::fail(where, "beta = ", beta, " applies only to goodness = \"bradley_terry\", not \"", name, "\"");
  if (name == "logistic") return brain::logistic{};
  if (name == "log_goodness") return brain::log_goodness{};
  bad_choice(where, "goodness", name, "\"bradley_terry\", \"logistic\", \"log_goodness\"");
}

brain::options make_options(const char* where, const std::string& target, bool validate) {
  brain::options opt{.validate = validate};
  if (target == "softmax")
    opt.target = brain::target_rule::softmax;
  else if (target == "argmax")
    opt.target = brain::target_rule::argmax;
  else
    bad_choice(where, "target", target, "\"softmax\", \"argmax\"");
  return opt;
}

brain::estimator make_estimator(const char* where, const std::string& name) {
  using brain::estimator;
  for (estimator e : {estimator::brain, estimator::no_baseline, estimator::gdc_pp, estimator::dpg, estimator::rloo,
                      estimator::grpo, estimator::ppo_clip})
    if (brain::name_of(e) == name) return e;
  bad_choice(where, "estimator", name,
             "\"brain\", \"no_baseline\", \"gdc_pp\", \"dpg\", \"rloo\", \"grpo\", \"ppo_clip\"");
}

brain::advantage_scaling make_scaling(const char* where, const std::string& name) {
  if (name == "group") return brain::advantage_scaling::group;
  if (name == "batch") return brain::advantage_scaling::batch;
  if (name == "none") return brain::advantage_scaling::none;
  bad_choice(where, "scale_rewards", name, "\"group\", \"batch\", \"none\"");
}

brain::libtorch::alignment make_alignment(const char* where, const std::string& name) {
  if (name == "next_token") return brain::libtorch::alignment::next_token;
  if (name == "same_position") return brain::libtorch::alignment::same_position;
  bad_choice(where, "alignment", name, "\"next_token\", \"same_position\"");
}

brain::libtorch::log_prob_options make_log_prob_options(const char* where, const std::string& reduce,
                                                        double temperature, int64_t top_k, double top_p,
                                                        bool validate) {
  using brain::libtorch::reduction;
  brain::libtorch::log_prob_options opt{.sample = {.temperature = temperature, .top_k = top_k, .top_p = top_p},
                                        .validate = validate};
  if (reduce == "sum")
    opt.reduce = reduction::sum;
  else if (reduce == "mean")
    opt.reduce = reduction::mean;
  else if (reduce == "none")
    opt.reduce = reduction::none;
  else
    bad_choice(where, "reduce", reduce, "\"sum\", \"mean\", \"none\"");
  return opt;
}

using samples = brain::samples<Tensor>;

// The keyword arguments of rollouts from an inference engine (rollouts.hpp), shared by brain_loss,
// the estimators and rollout_report.
struct rollout_arguments {
  std::optional<Tensor> log_sampler, mask;
  std::string sampler_correction = "mask";
  double sampler_lower = 0.0, sampler_upper = 3.0;
  std::string uninformative = "keep";
};

/// opt with rollout_arguments' choices.
void apply_rollout_arguments(const char* where, const rollout_arguments& r, brain::options& opt) {
  if (r.sampler_correction == "none")
    opt.sampler.correction = brain::sampler_correction::none;
  else if (r.sampler_correction == "truncate")
    opt.sampler.correction = brain::sampler_correction::truncate;
  else if (r.sampler_correction == "mask")
    opt.sampler.correction = brain::sampler_correction::mask;
  else
    bad_choice(where, "sampler_correction", r.sampler_correction, "\"none\", \"truncate\", \"mask\"");
  opt.sampler.lower = r.sampler_lower;
  opt.sampler.upper = r.sampler_upper;
  if (r.uninformative == "keep")
    opt.uninformative = brain::uninformative_groups::keep;
  else if (r.uninformative == "drop")
    opt.uninformative = brain::uninformative_groups::drop;
  else
    bad_choice(where, "uninformative", r.uninformative, "\"keep\", \"drop\"");
}

samples make_samples(const Tensor& log_policy, const Tensor& log_proposal, const Tensor& log_prior,
                     const Tensor& reward, const rollout_arguments& r = {}) {
  return {.log_policy = log_policy,
          .log_proposal = log_proposal,
          .log_prior = log_prior,
          .reward = reward,
          .log_sampler = r.log_sampler.value_or(Tensor()),
          .mask = r.mask.value_or(Tensor())};
}

/// The rollout keyword arguments, after the function's own: log_sampler, mask, sampler_correction,
/// sampler_lower, sampler_upper, uninformative.
#define BRAIN_ROLLOUT_PARAMETERS                                                                                    \
  const std::optional<Tensor>&log_sampler, const std::optional<Tensor>&mask, const std::string &sampler_correction, \
      double sampler_lower, double sampler_upper, const std::string &uninformative
#define BRAIN_ROLLOUT_ARGUMENTS \
  rollout_arguments { log_sampler, mask, sampler_correction, sampler_lower, sampler_upper, uninformative }
#define BRAIN_ROLLOUT_KEYWORDS                                                                               \
  py::arg("log_sampler") = py::none(), py::arg("mask") = py::none(), py::arg("sampler_correction") = "mask", \
  py::arg("sampler_lower") = 0.0, py::arg("sampler_upper") = 3.0, py::arg("uninformative") = "keep"

// The keyword arguments gradient_coefficients and surrogate_loss share.
struct estimator_arguments {
  brain::estimator kind;
  goodness_model goodness;
  brain::policy_gradient_options pg;
  brain::options opt;
};

estimator_arguments make_estimator_arguments(const char* where, const std::string& estimator, double beta,
                                             const std::string& goodness, const std::string& target, double clip_low,
                                             double clip_high, double kl_coef, const std::string& scale_rewards,
                                             const std::optional<Tensor>& log_partition, bool validate) {
  estimator_arguments a{make_estimator(where, estimator),
                        make_goodness(where, goodness, beta),
                        {.clip_low = clip_low,
                         .clip_high = clip_high,
                         .kl_coef = kl_coef,
                         .scale_rewards = make_scaling(where, scale_rewards)},
                        make_options(where, target, validate)};
  if (log_partition && a.kind != brain::estimator::gdc_pp && a.kind != brain::estimator::dpg)
    brain::detail::fail(where, "log_partition applies only to estimator \"gdc_pp\" or \"dpg\", not \"", estimator,
                        "\"");
  return a;
}

constexpr const char* brain_loss_doc = R"doc(
The BRAIn loss (paper §3): the mean over prompts of KL(alpha-bar || beta-bar) (eqs. 13-14).

Every input is a [prompts, n] tensor: n samples per prompt drawn from the proposal q.
  log_policy    log q_theta(y|x), the model being trained; the only input gradients flow to
  log_proposal  log q(y|x), the frozen model the samples came from
  log_prior     log p(y|x), the SFT model (-inf allowed: zero target weight)
  reward        r(x, y)
goodness: "bradley_terry" (log g = r / beta, eq. 21), "logistic" (log g = log sigmoid(r), eq. 15)
or "log_goodness" (the reward is log g); beta applies to "bradley_terry" only.
target: "softmax" (alpha-bar, eqs. 6, 21) or "argmax" (DPO's hard labels, Theorem 6.1).
Rollouts from an inference engine (docs/math.md §7.1): log_sampler [prompts, n], the engine's log mu(y|x),
corrected by sampler_correction "mask" (default: ratio q/mu outside [sampler_lower, sampler_upper] drops
the sample), "truncate" (clipped ratio) or "none"; mask [prompts, n] of 0/1 drops samples (a missing
reward may be NaN there); uninformative "keep" or "drop" (groups whose kept rewards are all equal).
Returns LossResult: loss (0-dim, differentiable w.r.t. log_policy), per_prompt [prompts],
target_weights (alpha-bar), baseline_weights (beta-bar), grad_log_policy = (beta-bar - alpha-bar) / prompts.
float16/bfloat16 inputs are computed in float32. Bad input raises ValueError.)doc";

constexpr const char* estimator_doc = R"doc(
estimator: "brain" (eq. 12), "no_baseline" (eq. 7), "gdc_pp", "dpg" (posterior distillation), or
"rloo", "grpo", "ppo_clip" (the KL-regularised reward objective, eq. 23; TRL's definitions).
clip_low, clip_high: grpo / ppo_clip ratio clipping [TRL epsilon, epsilon_high]; kl_coef: grpo's k3 KL
weight [TRL beta]; scale_rewards: grpo's advantage scaling, "group", "batch" or "none".
log_partition: the exact log p(G=1|x) per prompt, [prompts, 1], for gdc_pp and dpg only.
goodness, beta, target, log_sampler, mask, sampler_correction, sampler_lower, sampler_upper and
uninformative as brain_loss.)doc";

/// gradient_coefficients and surrogate_loss take the same arguments: one binding for both, `call`
/// being (samples, estimator_arguments, goodness model, log_partition) -> result.
template <class Call>
void def_estimator_function(py::module_& m, const char* name, const std::string& doc, Call call) {
  m.def(
      name,
      [name, call](const Tensor& log_policy, const Tensor& log_proposal, const Tensor& log_prior, const Tensor& reward,
                   const std::string& estimator, double beta, const std::string& goodness, const std::string& target,
                   double clip_low, double clip_high, double kl_coef, const std::string& scale_rewards,
                   const std::optional<Tensor>& log_partition, bool validate, BRAIN_ROLLOUT_PARAMETERS) {
        auto a = make_estimator_arguments(name, estimator, beta, goodness, target, clip_low, clip_high, kl_coef,
                                          scale_rewards, log_partition, validate);
        const rollout_arguments r = BRAIN_ROLLOUT_ARGUMENTS;
        apply_rollout_arguments(name, r, a.opt);
        const samples s = make_samples(log_policy, log_proposal, log_prior, reward, r);
        return std::visit([&](const auto& model) { return call(s, a, model, log_partition); }, a.goodness);
      },
      doc.c_str(), py::arg("log_policy"), py::arg("log_proposal"), py::arg("log_prior"), py::arg("reward"),
      py::kw_only(), py::arg("estimator") = "brain", py::arg("beta") = 1.0, py::arg("goodness") = "bradley_terry",
      py::arg("target") = "softmax", py::arg("clip_low") = 0.2, py::arg("clip_high") = 0.2, py::arg("kl_coef") = 0.0,
      py::arg("scale_rewards") = "group", py::arg("log_partition") = py::none(), py::arg("validate") = true,
      BRAIN_ROLLOUT_KEYWORDS, py::call_guard<py::gil_scoped_release>());
}

using release = py::call_guard<py::gil_scoped_release>;

// What brain_loss, surrogate_loss and dpo_loss return: read-only Python classes.
void bind_result_types(py::module_& m) {
  py::class_<brain::loss_result<Tensor>>(m, "LossResult", "What brain_loss returns")
      .def_readonly("loss", &brain::loss_result<Tensor>::loss)
      .def_readonly("per_prompt", &brain::loss_result<Tensor>::per_prompt)
      .def_readonly("target_weights", &brain::loss_result<Tensor>::target_weights)
      .def_readonly("baseline_weights", &brain::loss_result<Tensor>::baseline_weights)
      .def_readonly("grad_log_policy", &brain::loss_result<Tensor>::grad_log_policy)
      .def("__repr__", [](const brain::loss_result<Tensor>& r) {
        return "LossResult(loss=" + std::to_string(r.loss.item<double>()) + ")";
      });

  py::class_<brain::surrogate_result<Tensor>>(m, "SurrogateResult", "What surrogate_loss returns")
      .def_readonly("loss", &brain::surrogate_result<Tensor>::loss)
      .def_readonly("per_prompt", &brain::surrogate_result<Tensor>::per_prompt)
      .def_readonly("coefficients", &brain::surrogate_result<Tensor>::coefficients)
      .def_readonly("grad_log_policy", &brain::surrogate_result<Tensor>::grad_log_policy);

  py::class_<brain::dpo_result<Tensor>>(m, "DpoResult", "What dpo_loss returns")
      .def_readonly("loss", &brain::dpo_result<Tensor>::loss)
      .def_readonly("per_pair", &brain::dpo_result<Tensor>::per_pair)
      .def_readonly("grad_chosen", &brain::dpo_result<Tensor>::grad_chosen)
      .def_readonly("grad_rejected", &brain::dpo_result<Tensor>::grad_rejected);
}

// The losses: brain_loss (the paper's, eqs. 13-14) and dpo_loss (its pairwise reduction, Theorem 6.1).
void bind_losses(py::module_& m) {
  m.def(
      "brain_loss",
      [](const Tensor& log_policy, const Tensor& log_proposal, const Tensor& log_prior, const Tensor& reward,
         double beta, const std::string& goodness, const std::string& target, bool validate, BRAIN_ROLLOUT_PARAMETERS) {
        const auto g = make_goodness("brain_loss", goodness, beta);
        auto opt = make_options("brain_loss", target, validate);
        const rollout_arguments r = BRAIN_ROLLOUT_ARGUMENTS;
        apply_rollout_arguments("brain_loss", r, opt);
        const samples s = make_samples(log_policy, log_proposal, log_prior, reward, r);
        return std::visit([&](const auto& model) { return brain::brain_loss(s, model, opt); }, g);
      },
      brain_loss_doc, py::arg("log_policy"), py::arg("log_proposal"), py::arg("log_prior"), py::arg("reward"),
      py::kw_only(), py::arg("beta") = 1.0, py::arg("goodness") = "bradley_terry", py::arg("target") = "softmax",
      py::arg("validate") = true, BRAIN_ROLLOUT_KEYWORDS, release());

  m.def(
      "rollout_report",
      [](const Tensor& log_policy, const Tensor& log_proposal, const Tensor& log_prior, const Tensor& reward,
         const std::string& estimator, bool validate, BRAIN_ROLLOUT_PARAMETERS) {
        brain::options opt{.validate = validate};
        const rollout_arguments r = BRAIN_ROLLOUT_ARGUMENTS;
        apply_rollout_arguments("rollout_report", r, opt);
        const auto d = brain::rollout_report(make_samples(log_policy, log_proposal, log_prior, reward, r),
                                             make_estimator("rollout_report", estimator), opt);
        return std::map<std::string, double>{{"groups", double(d.groups)},
                                             {"used_groups", double(d.used_groups)},
                                             {"skipped_groups", double(d.skipped_groups)},
                                             {"uninformative_groups", double(d.uninformative_groups)},
                                             {"masked_samples", double(d.masked_samples)},
                                             {"mean_abs_log_ratio", d.mean_abs_log_ratio},
                                             {"max_abs_log_ratio", d.max_abs_log_ratio},
                                             {"kl_k3", d.kl_k3},
                                             {"min_ratio", d.min_ratio},
                                             {"mean_ratio", d.mean_ratio},
                                             {"max_ratio", d.max_ratio},
                                             {"share_truncated", d.share_truncated},
                                             {"share_masked", d.share_masked}};
      },
      "What a batch's rollouts look like to an estimator (rollouts.hpp): groups used, skipped for too few kept "
      "samples, uninformative (all kept rewards equal); masked samples; and with log_sampler the mismatch between "
      "the engine's and the trainer's log-probs (mean and max |log q - log mu|, k3 KL(mu || q), ratio min/mean/max, "
      "share truncated or masked). Returns a dict.",
      py::arg("log_policy"), py::arg("log_proposal"), py::arg("log_prior"), py::arg("reward"), py::kw_only(),
      py::arg("estimator") = "brain", py::arg("validate") = true, BRAIN_ROLLOUT_KEYWORDS, release());

  m.def(
      "dpo_loss",
      [](const Tensor& chosen_log_policy, const Tensor& rejected_log_policy, const Tensor& chosen_log_reference,
         const Tensor& rejected_log_reference, double beta, double label_smoothing, bool validate) {
        return brain::dpo_loss(chosen_log_policy, rejected_log_policy, chosen_log_reference, rejected_log_reference,
                               brain::dpo_options{.beta = beta, .label_smoothing = label_smoothing},
                               brain::options{.validate = validate});
      },
      "DPO (Rafailov et al. 2023, eq. 7) of pairs: -(1-eps) log sigmoid(beta h) - eps log sigmoid(-beta h), "
      "h = [log pi(y_w) - log ref(y_w)] - [log pi(y_l) - log ref(y_l)]. With beta = 1 and the prior as "
      "reference it equals brain_loss with target=\"argmax\" on pairs (Theorem 6.1). Returns DpoResult.",
      py::arg("chosen_log_policy"), py::arg("rejected_log_policy"), py::arg("chosen_log_reference"),
      py::arg("rejected_log_reference"), py::kw_only(), py::arg("beta") = 0.1, py::arg("label_smoothing") = 0.0,
      py::arg("validate") = true, release());
}

// The estimators: gradient_coefficients and surrogate_loss, any of the seven by name, one binding for both.
void bind_estimators(py::module_& m) {
  // Static: def_estimator_function hands their c_str() to pybind11.
  static const std::string coefficients_doc =
      std::string(
          "Per-sample ascent coefficients w [prompts, n] of an estimator (sum_i w_i grad log "
          "q_theta(y_i|x)), detached.") +
      estimator_doc;
  static const std::string surrogate_doc =
      std::string(
          "The estimator's surrogate loss: mean over prompts of its objective, negated; "
          "d loss / d log_policy = -coefficients / prompts. Returns SurrogateResult.") +
      estimator_doc;

  def_estimator_function(m, "gradient_coefficients", coefficients_doc,
                         [](const samples& s, const estimator_arguments& a, const auto& model,
                            const std::optional<Tensor>& log_partition) {
                           return log_partition ? brain::gradient_coefficients(s, a.kind, model, *log_partition, a.opt)
                                                : brain::gradient_coefficients(s, a.kind, model, a.pg, a.opt);
                         });
  def_estimator_function(m, "surrogate_loss", surrogate_doc,
                         [](const samples& s, const estimator_arguments& a, const auto& model,
                            const std::optional<Tensor>& log_partition) {
                           return log_partition ? brain::surrogate_loss(s, a.kind, model, *log_partition, a.opt)
                                                : brain::surrogate_loss(s, a.kind, model, a.pg, a.opt);
                         });
}

// What the weights are made of: log goodness of rewards, and the effective sample size of weights.
void bind_weight_helpers(py::module_& m) {
  m.def(
      "log_goodness",
      [](const Tensor& reward, double beta, const std::string& goodness) {
        return std::visit([&](const auto& model) { return brain::log_goodness_of(model, reward); },
                          make_goodness("log_goodness", goodness, beta));
      },
      "log p(G=1|x, y) of every reward under a goodness model (goodness, beta as brain_loss)", py::arg("reward"),
      py::kw_only(), py::arg("beta") = 1.0, py::arg("goodness") = "bradley_terry", release());

  m.def(
      "effective_sample_size",
      [](const Tensor& weights, bool validate) {
        return brain::effective_sample_size(weights, brain::options{.validate = validate});
      },
      "Kish's effective sample size (sum w)^2 / sum w^2 of each row of weights [prompts, n]", py::arg("weights"),
      py::kw_only(), py::arg("validate") = true, release());
}

// Groupings of a batch: regroup into groups of k, pairwise (k = 2), and RSO's rejection sampling and pairs.
void bind_groupings(py::module_& m) {
  const auto regroup = [](const Tensor& log_policy, const Tensor& log_proposal, const Tensor& log_prior,
                          const Tensor& reward, int64_t k, bool validate) {
    const samples g = brain::regroup(make_samples(log_policy, log_proposal, log_prior, reward), k,
                                     brain::options{.validate = validate});
    return std::make_tuple(g.log_policy, g.log_proposal, g.log_prior, g.reward);
  };
  m.def("regroup", regroup,
        "Splits each prompt's n samples into n / k groups of k consecutive samples: returns the four "
        "tensors as [prompts * n / k, k] (log_policy, log_proposal, log_prior, reward)",
        py::arg("log_policy"), py::arg("log_proposal"), py::arg("log_prior"), py::arg("reward"), py::arg("k"),
        py::kw_only(), py::arg("validate") = true, release());
  m.def(
      "pairwise",
      [regroup](const Tensor& log_policy, const Tensor& log_proposal, const Tensor& log_prior, const Tensor& reward,
                bool validate) { return regroup(log_policy, log_proposal, log_prior, reward, 2, validate); },
      "n samples per prompt as n / 2 pairs (samples 2i, 2i+1), DPO-sft's grouping (Table 3): regroup with k = 2",
      py::arg("log_policy"), py::arg("log_proposal"), py::arg("log_prior"), py::arg("reward"), py::kw_only(),
      py::arg("validate") = true, release());

  m.def(
      "rso_log_acceptance",
      [](const Tensor& reward, double beta, bool validate) {
        return brain::rso_log_acceptance(reward, beta, brain::options{.validate = validate});
      },
      "log of RSO's acceptance probability, (r_i - max_j r_j) / beta per row", py::arg("reward"), py::kw_only(),
      py::arg("beta"), py::arg("validate") = true, release());
  m.def(
      "rso_select",
      [](const Tensor& reward, double beta, int64_t max_accepted, uint64_t seed, bool validate) {
        std::mt19937_64 rng(seed);
        return brain::rso_select(reward, beta, max_accepted, rng, brain::options{.validate = validate});
      },
      "RSO's statistical rejection sampling per row: visit the samples in a random order (std::mt19937_64 "
      "seeded by seed) and accept each with probability exp((r_i - max_j r_j) / beta) until max_accepted are "
      "accepted. Returns the accepted columns per row, in order.",
      py::arg("reward"), py::kw_only(), py::arg("beta"), py::arg("max_accepted"), py::arg("seed") = 0,
      py::arg("validate") = true, release());
  m.def(
      "rso_pairs",
      [](const Tensor& reward, const std::vector<std::vector<brain::index>>& accepted) {
        std::vector<std::tuple<brain::index, brain::index, brain::index>> out;
        for (const auto& p : brain::rso_pairs(reward, accepted)) out.emplace_back(p.row, p.chosen, p.rejected);
        return out;
      },
      "RSO's pairs from rso_select's result: consecutive accepted samples, as (row, chosen, rejected) with the "
      "higher reward chosen (the earlier one on ties)",
      py::arg("reward"), py::arg("accepted"), release());
}

// Sequence log-probs from a model's outputs (logits, or hidden states and the output layer), and the
// distribution a sampler draws from.
void bind_log_probs(py::module_& m) {
  m.def(
      "sequence_log_probs",
      [](const Tensor& logits, const Tensor& labels, const Tensor& mask, const std::string& alignment,
         const std::string& reduce, double temperature, int64_t top_k, double top_p, bool validate) {
        constexpr const char* where = "sequence_log_probs";
        return brain::libtorch::sequence_log_probs(
            logits, labels, mask, make_alignment(where, alignment),
            make_log_prob_options(where, reduce, temperature, top_k, top_p, validate));
      },
      "log q(y|x) from logits [B, T, V], labels [B, T] and mask [B, T] (non-zero: response tokens). "
      "alignment: \"next_token\" (logits[b, t] scores labels[b, t+1]; pass input ids unshifted) or "
      "\"same_position\". reduce: \"sum\" [B], \"mean\" [B] or \"none\" [B, T]. temperature, top_k, top_p: the "
      "sampler's settings (log-probs of the distribution it drew from). Differentiable w.r.t. logits; "
      "float32 result for float16/bfloat16/float32 logits, float64 for float64.",
      py::arg("logits"), py::arg("labels"), py::arg("mask"), py::arg("alignment"), py::kw_only(),
      py::arg("reduce") = "sum", py::arg("temperature") = 1.0, py::arg("top_k") = 0, py::arg("top_p") = 1.0,
      py::arg("validate") = true, release());

  m.def(
      "fused_linear_sequence_log_probs",
      [](const Tensor& hidden, const Tensor& weight, const Tensor& labels, const Tensor& mask,
         const std::string& alignment, int64_t chunk_tokens, int64_t vocab_tile, const std::string& reduce,
         double temperature, int64_t top_k, double top_p, bool validate) {
        constexpr const char* where = "fused_linear_sequence_log_probs";
        brain::libtorch::log_prob_options opt =
            make_log_prob_options(where, reduce, temperature, top_k, top_p, validate);
        opt.vocab_tile = vocab_tile;
        return brain::libtorch::fused_linear_sequence_log_probs(hidden, weight, labels, mask,
                                                                make_alignment(where, alignment), chunk_tokens, opt);
      },
      "sequence_log_probs of logits = hidden [B, T, d] @ weight [V, d]^T without materialising them: at most "
      "chunk_tokens (0: a default from V) x vocab_tile (0: from the L2 cache size; CPU only) logits at a time. "
      "Differentiable w.r.t. hidden and weight.",
      py::arg("hidden"), py::arg("weight"), py::arg("labels"), py::arg("mask"), py::arg("alignment"), py::kw_only(),
      py::arg("chunk_tokens") = 0, py::arg("vocab_tile") = 0, py::arg("reduce") = "sum", py::arg("temperature") = 1.0,
      py::arg("top_k") = 0, py::arg("top_p") = 1.0, py::arg("validate") = true, release());

  m.def(
      "sampled_log_softmax",
      [](const Tensor& logits, double temperature, int64_t top_k, double top_p) {
        return brain::libtorch::sampled_log_softmax(logits,
                                                    {.temperature = temperature, .top_k = top_k, .top_p = top_p});
      },
      "The distribution a sampler draws from, as log-probs over the last dimension of logits [..., V]: "
      "logits / temperature, then top_k, then top_p; -inf outside. Sample from its exp().",
      py::arg("logits"), py::kw_only(), py::arg("temperature") = 1.0, py::arg("top_k") = 0, py::arg("top_p") = 1.0,
      release());
}

}  // namespace

PYBIND11_MODULE(_brain, m) {
  m.doc() = "BRAIn: Bayesian Reward-conditioned Amortized Inference (the C++ library's LibTorch backend)";
  m.attr("__version__") = std::to_string(BRAIN_VERSION_MAJOR) + "." + std::to_string(BRAIN_VERSION_MINOR) + "." +
                          std::to_string(BRAIN_VERSION_PATCH);
  bind_result_types(m);
  bind_losses(m);
  bind_estimators(m);
  bind_weight_helpers(m);
  bind_groupings(m);
  bind_log_probs(m);
}
