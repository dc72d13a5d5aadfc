#include "xformer/train/checkpoint.h"

#include <torch/version.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>

#include "xformer/core/atomic_file.h"
#include "xformer/core/error.h"
#include "xformer/train/adam.h"
#include "xformer/train/checkpoint_choice.h"

namespace fs = std::filesystem;

namespace xformer::train {

RngState current_rng_state(const torch::Device& device) {
  RngState s;
  s.cpu = at::detail::getDefaultCPUGenerator().get_state();
  if (device.is_cuda()) s.device = at::globalContext().defaultGenerator(device).get_state();
  return s;
}

namespace {
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// The module's parameters and buffers by dotted name, in the module's order. Queried afresh after
// each load: LibTorch's load may rebind them to new tensors.
NamedTensors named_tensors(const torch::nn::Module& model) {
  NamedTensors all;
  for (const auto& item : model.named_parameters()) all.emplace_back(item.key(), item.value());
  for (const auto& item : model.named_buffers()) all.emplace_back(item.key(), item.value());
  return all;
}

// A 64-bit digest of named tensors (names, types, shapes and bytes), written into the
// checkpoint's meta for its model, optimizer state and weight average: the archive's own reader
// does not check its contents, so a damaged byte would otherwise load as a slightly different
// model, or resume a slightly different run. Four independent lanes of multiply-xorshift mixing
// over the bytes: one more pass over the data, as writing or reading the file makes.
std::string digest_of(const NamedTensors& tensors) {
  constexpr uint64_t kMul = 0x9E3779B97F4A7C15ULL;
  uint64_t lane[4] = {1, 2, 3, 4};
  auto mix = [&](int i, uint64_t w) {
    uint64_t h = (lane[i] ^ w) * kMul;
    lane[i] = h ^ (h >> 31);
  };
  auto mix_bytes = [&](const unsigned char* p, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
      for (int l = 0; l < 4; ++l) {
        uint64_t w;
        std::memcpy(&w, p + i + 8 * l, 8);
        mix(l, w);
      }
    uint64_t tail = n;
    for (; i < n; ++i) tail = tail * 131 + p[i];
    mix(0, tail);
  };
  for (const auto& [name, t] : tensors) {
    const std::string header = name + ":" + std::string(c10::toString(t.scalar_type())) + c10::str(t.sizes());
    mix_bytes(reinterpret_cast<const unsigned char*>(header.data()), header.size());
    const auto host = t.detach().to(torch::kCPU).contiguous();
    mix_bytes(static_cast<const unsigned char*>(host.data_ptr()), host.nbytes());
  }
  uint64_t h = 0;
  for (uint64_t l : lane) h = (h ^ l) * kMul, h ^= h >> 29;
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

std::string model_digest(const torch::nn::Module& model) { return digest_of(named_tensors(model)); }

std::string average_digest(const WeightAverage& average) {
  NamedTensors tensors;
  for (size_t i = 0; i < average.average().size(); ++i) tensors.emplace_back(std::to_string(i), average.average()[i]);
  return digest_of(tensors);
}

// The optimizer's state digest: train::Adam's (the trainer's optimizer); "" for another one.
std::string optimizer_digest(const torch::optim::Optimizer& optimizer) {
  const auto* adam = dynamic_cast<const Adam*>(&optimizer);
  return adam ? digest_of(adam->state_tensors()) : "";
}

// DataError when `meta` holds a digest under `key` and `actual` differs from it.
void check_digest(const nlohmann::json& meta, const char* key, const std::string& actual, const std::string& path,
                  const std::string& what) {
  if (meta.contains(key) && meta.at(key) != actual)
    throw DataError("checkpoint '" + path + "' is corrupt: the digest of its " + what +
                    " does not match the one written into it");
}
}  // namespace

void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                     const torch::optim::Optimizer* optimizer, const nlohmann::json& meta,
                     const std::vector<RngState>& rank_rng_states, const WeightAverage* average) {
  torch::serialize::OutputArchive archive;
  torch::serialize::OutputArchive model_archive;
  model.save(model_archive);
  archive.write("model", model_archive);
  if (optimizer) {
    torch::serialize::OutputArchive optim_archive;
    optimizer->save(optim_archive);
    archive.write("optimizer", optim_archive);
  }
  nlohmann::json full = meta;
  if (average) {
    torch::serialize::OutputArchive average_archive;
    average->save(average_archive);
    archive.write("ema", average_archive);
    full["ema"] = average->state();
    full["ema_digest"] = average_digest(*average);
  }
  full["model_digest"] = model_digest(model);
  if (optimizer) full["optimizer_digest"] = optimizer_digest(*optimizer);
  full["format"] = kCheckpointFormat;
  full["libtorch"] = TORCH_VERSION;
  archive.write("meta", c10::IValue(full.dump()));
  const auto states = rank_rng_states.empty() ? std::vector<RngState>{current_rng_state(torch::kCPU)} : rank_rng_states;
  for (size_t r = 0; r < states.size(); ++r) {
    const std::string suffix = r == 0 ? "" : "_rank" + std::to_string(r);
    archive.write("rng_cpu" + suffix, states[r].cpu.cpu());
    if (states[r].device.defined()) archive.write("rng_device" + suffix, states[r].device.cpu());
  }

  const std::string tmp = temp_path_for(path);
  try {
    archive.save_to(tmp);
  } catch (const std::exception& e) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw DataError("cannot write checkpoint '" + path + "': " + e.what());
  }
  commit_file(tmp, path);
}

namespace {
// Tensors are mapped to `device` as they are read: LibTorch replaces a parameter that lives on
// another device instead of copying into it.
torch::serialize::InputArchive open_archive(const std::string& path,
                                            c10::optional<torch::Device> device = c10::nullopt) {
  if (!fs::exists(path)) throw DataError("checkpoint '" + path + "' does not exist");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path, device);
  } catch (const std::exception&) {
    throw DataError("checkpoint '" + path + "' is unreadable or corrupt");
  }
  return archive;
}

// The dotted names of every tensor in a module's archive (submodules are nested archives).
void tensor_names(torch::serialize::InputArchive& archive, const std::string& prefix, std::vector<std::string>& out) {
  for (const auto& key : archive.keys()) {
    torch::Tensor tensor;
    torch::serialize::InputArchive child;
    if (archive.try_read(key, tensor))
      out.push_back(prefix + key);
    else if (archive.try_read(key, child))
      tensor_names(child, prefix + key + ".", out);
  }
}

nlohmann::json meta_of(torch::serialize::InputArchive& archive, const std::string& path) {
  c10::IValue value;
  if (!archive.try_read("meta", value) || !value.isString())
    throw DataError("'" + path + "' is not an xformer checkpoint (no meta record)");
  auto meta = nlohmann::json::parse(value.toStringRef());
  if (meta.value("format", 0) != kCheckpointFormat)
    throw DataError("checkpoint '" + path + "' has format " + std::to_string(meta.value("format", 0)) +
                    ", this xformer reads format " + std::to_string(kCheckpointFormat));
  return meta;
}
}  // namespace

nlohmann::json load_checkpoint(const std::string& path, torch::nn::Module& model, const LoadOptions& options) {
  auto params = model.parameters();
  auto archive = open_archive(path, params.empty() ? torch::Device(torch::kCPU) : params[0].device());
  auto meta = meta_of(archive, path);
  // LibTorch takes each tensor's shape from the archive, so a model built from another config
  // would silently become the checkpoint's: the shapes are compared after loading instead.
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, t] : named_tensors(model)) shapes.emplace(name, t.sizes().vec());
  try {
    torch::serialize::InputArchive model_archive;
    archive.read("model", model_archive);
    // Tensors the model lacks are ignored by LibTorch (a 6-layer checkpoint would load into 4).
    std::vector<std::string> stored;
    tensor_names(model_archive, "", stored);
    for (const auto& name : stored)
      if (!shapes.count(name))
        throw DataError("checkpoint '" + path + "' does not fit this model: it holds '" + name +
                        "', which the model built from the config does not have");
    model.load(model_archive);
    for (const auto& [name, t] : named_tensors(model))
      if (t.sizes().vec() != shapes.at(name))
        throw DataError("checkpoint '" + path + "' does not fit this model: '" + name + "' is " +
                        c10::str(t.sizes()) + " in the checkpoint but " + c10::str(c10::IntArrayRef(shapes.at(name))) +
                        " in the model built from the config");
    check_digest(meta, "model_digest", model_digest(model), path, "model weights");
    if (options.optimizer) {
      torch::serialize::InputArchive optim_archive;
      archive.read("optimizer", optim_archive);
      options.optimizer->load(optim_archive);
      check_digest(meta, "optimizer_digest", optimizer_digest(*options.optimizer), path, "optimizer state");
    }
    torch::serialize::InputArchive average_archive;
    const bool has_average = meta.contains("ema") && archive.try_read("ema", average_archive);
    if (options.average) {
      // An average kept with another decay is not continued: its past weights were weighed
      // differently. It starts over, as when averaging is turned on at resume.
      const bool same = has_average && meta.at("ema").at("decay").get<double>() == options.average->decay();
      if (same) {
        options.average->load(average_archive, meta.at("ema"), path);
        check_digest(meta, "ema_digest", average_digest(*options.average), path, "averaged weights");
      }
      else options.average->restart();
      meta["ema_restored"] = same;
    } else if (options.averaged_weights && has_average) {
      WeightAverage average(model, meta.at("ema").at("decay").get<double>());
      average.load(average_archive, meta.at("ema"), path);
      check_digest(meta, "ema_digest", average_digest(average), path, "averaged weights");
      average.swap();  // the model now holds the averaged weights
      meta["ema_loaded"] = true;
    }
    if (options.restore_rng) {
      const int rank = options.rank;
      torch::Tensor state;
      const std::string suffix = rank == 0 ? "" : "_rank" + std::to_string(rank);
      const bool found = archive.try_read("rng_cpu" + suffix, state);
      if (found) {
        at::Generator generator = at::detail::getDefaultCPUGenerator();  // a handle
        generator.set_state(state.to(torch::kCPU));
      }
      meta["rng_restored"] = found;
      // A checkpoint from CPU training (or without the device's state) leaves the GPU's
      // generator as seeded.
      if (options.device.is_cuda() && archive.try_read("rng_device" + suffix, state)) {
        try {  // a state another LibTorch cannot take costs the exact dropout stream, not the resume
          at::Generator generator = at::globalContext().defaultGenerator(options.device);
          generator.set_state(state.to(torch::kCPU));
        } catch (const c10::Error& e) {
          meta["rng_device_unusable"] = std::string(e.what_without_backtrace()).substr(0, 200);
        }
      }
    }
  } catch (const c10::Error& e) {
    throw DataError("checkpoint '" + path + "' does not fit this model/optimizer: " +
                    std::string(e.what_without_backtrace()).substr(0, 200));
  }
  return meta;
}

nlohmann::json read_checkpoint_meta(const std::string& path) {
  auto archive = open_archive(path);
  return meta_of(archive, path);
}

std::string step_checkpoint_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%08lld.pt", static_cast<long long>(step));
  return name;
}

std::vector<std::string> step_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> steps;  // (step, path)
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step_", 0) != 0 || e.path().extension() != ".pt") continue;
    const std::string digits = e.path().stem().string().substr(5);
    if (digits.empty() || digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    steps.emplace_back(std::stoll(digits), e.path().string());
  }
  std::sort(steps.begin(), steps.end());
  std::vector<std::string> paths;
  for (auto& [step, path] : steps) paths.push_back(std::move(path));
  return paths;
}

std::vector<std::string> resolve_checkpoints(const std::string& run_dir, const std::string& which) {
  const fs::path dir = fs::path(run_dir) / "checkpoints";
  if (const int average = averaged_checkpoint_count(which); average > 0) {
    const auto n = static_cast<size_t>(average);
    const auto steps = step_checkpoints(dir.string());
    if (steps.size() < n)
      throw ConfigError("usage error: --checkpoint " + which + ": '" + dir.string() + "' holds " +
                        std::to_string(steps.size()) + " step checkpoints (train.keep_last keeps the last K)");
    return {steps.end() - static_cast<std::ptrdiff_t>(n), steps.end()};
  }
  const bool named = which == "last" || which == "best";
  const std::string path = named ? (dir / (which + ".pt")).string() : which;
  std::error_code ec;
  if (!named && !fs::is_regular_file(path, ec))
    throw ConfigError("usage error: --checkpoint '" + which +
                      "': expected last, best, average:N or the path of a checkpoint file");
  if (!fs::exists(path, ec))
    throw DataError("checkpoint '" + path + "' does not exist" +
                    (which == "best" && fs::exists(dir / "last.pt", ec)
                         ? " (no validation has chosen one yet; --checkpoint last loads the latest)"
                         : ""));
  return {path};
}

nlohmann::json load_model_weights(const std::vector<std::string>& paths, torch::nn::Module& model,
                                  bool averaged_weights) {
  TORCH_CHECK(!paths.empty(), "load_model_weights needs a checkpoint");
  LoadOptions options;
  options.averaged_weights = averaged_weights;
  if (paths.size() == 1) return load_checkpoint(paths[0], model, options);
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> sums;  // in float64: the average does not depend on the order
  nlohmann::json meta, steps = nlohmann::json::array();
  std::vector<std::string> with_average, without;  // checkpoints that gave a moving average or not
  for (const auto& path : paths) {
    meta = load_checkpoint(path, model, options);
    steps.push_back(meta.value("step", 0));
    (meta.value("ema_loaded", false) ? with_average : without).push_back(fs::path(path).filename().string());
    for (const auto& [name, t] : named_tensors(model)) {
      if (!t.is_floating_point()) continue;  // integer buffers keep the newest checkpoint's value
      auto it = sums.find(name);
      if (it == sums.end()) sums.emplace(name, t.to(torch::kDouble, /*non_blocking=*/false, /*copy=*/true));
      else it->second.add_(t.to(torch::kDouble));
    }
  }
  for (const auto& [name, t] : named_tensors(model))
    if (t.is_floating_point()) t.copy_(sums.at(name) / static_cast<double>(paths.size()));
  // Never a silent mixture of averaged and trained weights.
  if (!with_average.empty() && !without.empty())
    throw ConfigError("usage error: of the checkpoints to average, " + with_average.front() +
                      " holds a moving average of the weights (train.ema_decay) but " + without.front() +
                      " does not; add --no-ema to average their trained weights");
  meta["averaged_steps"] = steps;
  return meta;
}

void replace_with_link(const std::string& target, const std::string& link) {
  const std::string tmp = temp_path_for(link);
  std::error_code ec;
  fs::remove(tmp, ec);
  fs::create_hard_link(target, tmp, ec);
  if (ec) {  // no hard links on this filesystem: a copy, made durable like any other file
    fs::copy_file(target, tmp, fs::copy_options::overwrite_existing);
    commit_file(tmp, link);
    return;
  }
  fs::rename(tmp, link);
}

}  // namespace xformer::train
