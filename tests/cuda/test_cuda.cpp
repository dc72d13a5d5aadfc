// CUDA against the CPU: every attention variant (SASA's included), the models, the fused loss and Adam give the
// same numbers on the GPU (fp32, TF32 off: |diff| < 1e-4 on unit-scale outputs), autocast
// stays close to fp32, and the tiny configs train, evaluate and sample on the GPU in bf16 and
// fp16, and data-parallel ranks work on the GPU (NCCL where built with it). Every case passes trivially (with a warning) where no CUDA device is present.
#include "test_support.h"

#include <cstdlib>

#include "cli/cli_helpers.h"
#include "xformer/core/precision.h"
#include "xformer/core/runtime.h"
#include "xformer/models/image_transformer.h"
#include "xformer/models/music_transformer.h"
#include "xformer/models/resnet.h"
#include "xformer/nn/attention.h"
#include "xformer/nn/loss.h"
#include "xformer/nn/recompute.h"
#include "xformer/nn/sasa.h"
#include "xformer/train/adam.h"
#include "xformer/train/distributed.h"
#include "xformer/train/grad_reducer.h"

using namespace xformer;
using xformer::testing::max_abs_diff;

namespace {

bool have_cuda() {
  if (torch::cuda::is_available()) {
    allow_tf32(false);  // exact fp32 products for the parity checks
    return true;
  }
  WARN("no CUDA device: skipped");
  return false;
}

const torch::Device kCuda(torch::kCUDA);

}  // namespace

// Without a GPU every case here passes by skipping: where one is expected (the GPU check sets
// XFORMER_REQUIRE_CUDA), its absence fails.
TEST_CASE("CUDA: a GPU is there where the run requires one", "[cuda]") {
  if (std::getenv("XFORMER_REQUIRE_CUDA") != nullptr) REQUIRE(torch::cuda::is_available());
}

namespace {

// `gpu` (built with the same options as `cpu`) takes cpu's parameters and buffers, then moves
// to the GPU. (Our modules are not Cloneable; copying by name is all a test needs.)
template <typename M>
M moved_to_cuda(const M& cpu, M gpu) {
  torch::NoGradGuard no_grad;
  auto params = cpu->named_parameters();
  for (auto& p : gpu->named_parameters()) p.value().copy_(params[p.key()]);
  auto buffers = cpu->named_buffers();
  for (auto& b : gpu->named_buffers()) b.value().copy_(buffers[b.key()]);
  gpu->to(kCuda);
  gpu->eval();
  return gpu;
}

// Max |a - b| with both on the CPU in a's type.
double diff(const torch::Tensor& a, const torch::Tensor& b) {
  return max_abs_diff(a.to(torch::kCPU), b.to(torch::kCPU).to(a.scalar_type()));
}

}  // namespace

TEST_CASE("attention variants on CUDA match the CPU", "[cuda]") {
  if (!have_cuda()) return;
  torch::manual_seed(5);
  const int64_t B = 2, T = 9, D = 32, H = 4;
  auto x = torch::randn({B, T, D});
  auto memory = torch::randn({B, 6, D});
  auto padding = torch::zeros({B, 6}, torch::kBool);
  padding[1].narrow(0, 4, 2).fill_(true);

  nn::MultiheadAttention plain(D, H), relative(D, H, 0.0, /*max_relative_position=*/4);
  plain->eval(), relative->eval();
  auto plain_gpu = moved_to_cuda(plain, nn::MultiheadAttention(D, H));
  auto relative_gpu = moved_to_cuda(relative, nn::MultiheadAttention(D, H, 0.0, 4));
  nn::AttentionMask causal;
  causal.causal = true;
  nn::AttentionMask padded;
  padded.key_padding = padding;
  nn::AttentionMask padded_gpu;
  padded_gpu.key_padding = padding.to(kCuda);
  const auto xg = x.to(kCuda), mg = memory.to(kCuda);

  SECTION("full, with a padding mask (cross-attention)") {
    CHECK(diff(plain(x, memory, padded), plain_gpu(xg, mg, padded_gpu)) < 1e-4);
  }
  SECTION("causal") { CHECK(diff(plain(x, x, causal), plain_gpu(xg, xg, causal)) < 1e-4); }
  SECTION("causal with relative positions (skewing)") {
    CHECK(diff(relative(x, x, causal), relative_gpu(xg, xg, causal)) < 1e-4);
  }
  SECTION("attention weights") {
    torch::Tensor w_cpu, w_gpu;
    relative(x, x, causal, nullptr, false, &w_cpu);
    relative_gpu(xg, xg, causal, nullptr, false, &w_gpu);
    CHECK(diff(w_cpu, w_gpu) < 1e-5);
  }
  SECTION("step by step with the key/value cache equals the full pass") {
    for (auto [m, gpu] : {std::pair(relative, relative_gpu), std::pair(plain, plain_gpu)}) {
      auto full = m(x, x, causal);
      nn::KVCache cache;
      std::vector<torch::Tensor> steps;
      for (int64_t t = 0; t < T; ++t) {
        auto xt = xg.narrow(1, t, 1);
        steps.push_back(gpu(xt, xt, causal, &cache));
      }
      CHECK(diff(full, torch::cat(steps, 1)) < 1e-4);
    }
  }
}

TEST_CASE("models on CUDA match the CPU, forward and backward", "[cuda]") {
  if (!have_cuda()) return;
  torch::manual_seed(6);
  auto src = torch::randint(1, 13, {3, 7}), prev = torch::randint(1, 13, {3, 5});
  src[2].narrow(0, 5, 2).fill_(0);  // padding

  models::Transformer model(xformer::testing::small_transformer_options());
  auto gpu = moved_to_cuda(model, models::Transformer(xformer::testing::small_transformer_options()));
  model->train(), gpu->train();  // dropout is 0: train mode only exercises the training paths
  auto logits = model(src, prev);
  auto logits_gpu = gpu(src.to(kCuda), prev.to(kCuda));
  CHECK(diff(logits, logits_gpu) < 1e-4);
  logits.square().sum().backward();
  logits_gpu.square().sum().backward();
  auto pc = model->parameters(), pg = gpu->parameters();
  for (size_t i = 0; i < pc.size(); ++i) CHECK(diff(pc[i].grad(), pg[i].grad()) < 1e-3);

  auto o = xformer::testing::small_transformer_options();
  o.pre_norm = true, o.max_relative_position = 4;
  models::DecoderOnly music(o);
  music->eval();
  auto music_gpu = moved_to_cuda(music, models::DecoderOnly(o));
  auto tokens = torch::randint(1, 13, {2, 11});
  CHECK(diff(music(tokens), music_gpu(tokens.to(kCuda))) < 1e-4);
}

TEST_CASE("local 1D and 2D attention and the Image Transformer on CUDA match the CPU", "[cuda]") {
  if (!have_cuda()) return;
  torch::manual_seed(8);
  const int64_t B = 2, T = 24, D = 16, H = 2;
  auto x = torch::randn({B, T, D});
  nn::AttentionMask causal;
  causal.causal = true;
  // A key padding longer than a 1D block in row 0: windows of padding only, but the query itself.
  nn::AttentionMask padded = causal, padded_gpu = causal;
  padded.key_padding = torch::zeros({B, T}, torch::kBool);
  padded.key_padding[0].narrow(0, 14, 10).fill_(true);
  padded_gpu.key_padding = padded.key_padding.to(kCuda);
  const auto xg = x.to(kCuda);
  for (const auto& [name, window] : {std::pair<std::string, nn::LocalWindow>{"1d", {5, 0, {}}},
                                     {"2d", {0, 6, nn::Local2D{2, 6, 1, 3}}}}) {
    for (int64_t relative : {0, 4}) {
      if (relative && name == "2d") continue;  // relative positions: local 1D only
      CAPTURE(name, relative);
      nn::MultiheadAttention cpu(D, H, 0.0, relative, window);
      cpu->eval();
      auto gpu = moved_to_cuda(cpu, nn::MultiheadAttention(D, H, 0.0, relative, window));
      CHECK(diff(cpu(x, x, causal), gpu(xg, xg, causal)) < 1e-4);
      if (name == "1d") {  // key padding: sequences (local 2D attention is for images, unpadded)
        const auto y = cpu(x, x, padded), yg = gpu(xg, xg, padded_gpu);
        CHECK(torch::isfinite(yg).all().item<bool>());
        CHECK(diff(y, yg) < 1e-4);
      }
      nn::KVCache cache;  // cached steps on the GPU equal the full pass
      std::vector<torch::Tensor> steps;
      for (int64_t t = 0; t < T; ++t) {
        const auto xt = xg.narrow(1, t, 1);  // one tensor as query and key: self-attention
        steps.push_back(gpu(xt, xt, causal, &cache));
      }
      CHECK(diff(cpu(x, x, causal), torch::cat(steps, 1)) < 1e-4);
    }
  }
  for (const std::string attention : {"local1d", "local2d"}) {
    CAPTURE(attention);
    models::ImageTransformerOptions o;
    o.height = 4, o.width = 6, o.channels = 3;
    o.d_model = 16, o.heads = 2, o.ffn_dim = 32, o.layers = 2, o.dropout = 0.0;
    o.attention = attention, o.block_length = 7, o.local_2d = {2, 6, 1, 3};
    o.encoder_layers = 1, o.lr_height = 2, o.lr_width = 3;
    models::ImageTransformer cpu(o);
    cpu->train();  // dropout 0: the training paths, deterministic
    auto gpu = moved_to_cuda(cpu, models::ImageTransformer(o));
    gpu->train();
    auto images = torch::randint(0, 256, {2, 4, 6, 3}, torch::kLong);
    auto lr = torch::randint(0, 256, {2, 2, 3, 3}, torch::kLong);
    auto logits = cpu(images, lr), logits_gpu = gpu(images.to(kCuda), lr.to(kCuda));
    CHECK(diff(logits, logits_gpu) < 1e-4);
    logits.square().mean().backward();
    logits_gpu.square().mean().backward();
    auto pc = cpu->parameters(), pg = gpu->parameters();
    for (size_t i = 0; i < pc.size(); ++i) CHECK(diff(pc[i].grad(), pg[i].grad()) < 1e-3);
  }
}

TEST_CASE("CUDA bf16 autocast stays close to fp32, and the fused loss follows it", "[cuda]") {
  if (!have_cuda()) return;
  torch::manual_seed(7);
  auto o = xformer::testing::small_transformer_options();
  o.d_model = 64, o.ffn_dim = 128, o.heads = 4;
  models::Transformer model(o);
  model->to(kCuda);
  auto src = torch::randint(1, 13, {4, 9}, torch::TensorOptions(torch::kLong).device(kCuda));
  auto prev = torch::randint(1, 13, {4, 8}, torch::TensorOptions(torch::kLong).device(kCuda));
  auto full = model(src, prev);
  torch::Tensor reduced;
  {
    AutocastScope scope(Precision::BFloat16, kCuda);
    REQUIRE(autocast_type(kCuda) == torch::kBFloat16);
    reduced = model(src, prev);
  }
  CHECK(!autocast_type(kCuda).has_value());  // the scope restored the previous state
  // bf16 keeps 8 bits of mantissa: logits of unit scale agree to a few hundredths.
  CHECK(diff(full, reduced.to(torch::kFloat)) < 0.1);

  // Fused projection + loss under autocast against the plain formulation in fp32.
  auto hidden = torch::randn({50, 64}, torch::TensorOptions().device(kCuda)).requires_grad_(true);
  auto weight = (torch::randn({300, 64}, torch::TensorOptions().device(kCuda)) * 0.1).requires_grad_(true);
  auto target = torch::randint(0, 300, {50}, torch::TensorOptions(torch::kLong).device(kCuda));
  target[3] = -1;  // ignored
  auto ref = nn::label_smoothed_cross_entropy(torch::mm(hidden, weight.t()), target, 0.1, -1);
  ref.loss.backward();
  auto gh = hidden.grad().clone(), gw = weight.grad().clone();
  hidden.mutable_grad().zero_(), weight.mutable_grad().zero_();
  nn::SmoothedLoss fused;
  {
    AutocastScope scope(Precision::BFloat16, kCuda);
    fused = nn::linear_label_smoothed_cross_entropy(hidden, weight, target, 0.1, -1, /*chunk_rows=*/16);
  }
  fused.loss.backward();
  CHECK(fused.loss.scalar_type() == torch::kFloat);
  CHECK(std::abs(fused.loss.item<double>() - ref.loss.item<double>()) < 1e-2 * ref.loss.item<double>());
  CHECK(diff(gh, hidden.grad()) < 2e-2);
  CHECK(diff(gw, weight.grad()) < 2e-2);

  // A target outside the classes (and not ignored) makes the loss NaN on the GPU, which the
  // trainer skips and reports, instead of being read as another class (no host sync to refuse it).
  for (int64_t bad : {-2, 300}) {
    auto t = target.clone();
    t[5] = bad;
    CHECK(std::isnan(nn::linear_label_smoothed_cross_entropy(hidden, weight, t, 0.1, -1).loss.item<double>()));
    CHECK(std::isnan(nn::label_smoothed_cross_entropy(torch::mm(hidden, weight.t()), t, 0.1, -1).loss.item<double>()));
  }
}

TEST_CASE("CUDA: recomputed layers under bf16 autocast, dropout on, give the plain gradients", "[cuda][recompute]") {
  if (!have_cuda()) return;
  auto o = xformer::testing::small_transformer_options();
  o.d_model = 64, o.ffn_dim = 128, o.heads = 4;
  o.dropout = o.attention_dropout = o.activation_dropout = 0.2;
  torch::manual_seed(8);
  models::Transformer model(o);
  model->to(kCuda);
  model->train();
  const auto ids = torch::TensorOptions(torch::kLong).device(kCuda);
  auto src = torch::randint(1, 13, {4, 9}, ids), prev = torch::randint(1, 13, {4, 8}, ids);
  auto gradients = [&] {
    torch::manual_seed(9);  // the CUDA generator too: its dropout masks
    model->zero_grad();
    torch::Tensor loss;
    {
      AutocastScope scope(Precision::BFloat16, kCuda);  // forward only, as the trainer runs it
      auto logits = model(src, prev);
      REQUIRE(logits.scalar_type() == torch::kBFloat16);
      loss = logits.to(torch::kFloat).logsumexp(-1).sum();
    }
    loss.backward();
    std::vector<torch::Tensor> g;
    for (const auto& p : model->parameters()) g.push_back(p.grad().clone());
    return g;
  };
  const auto plain = gradients();
  REQUIRE(nn::set_recompute(*model, true) == 3);
  const auto recomputed = gradients();
  for (size_t i = 0; i < plain.size(); ++i) {
    INFO("parameter " << i);
    // Other dropout masks, or a second forward in fp32, would differ by far more.
    CHECK(diff(plain[i], recomputed[i]) <= 1e-3 * plain[i].abs().max().item<double>() + 1e-6);
  }
}

TEST_CASE("Adam on CUDA (multi-tensor) matches Adam on the CPU (fused)", "[cuda]") {
  if (!have_cuda()) return;
  torch::manual_seed(8);
  std::vector<torch::Tensor> cpu = {torch::randn({33, 7}), torch::randn({1000}), torch::randn({})};
  std::vector<torch::Tensor> gpu;
  for (auto& p : cpu) p.requires_grad_(true), gpu.push_back(p.detach().to(kCuda).requires_grad_(true));
  train::AdamConfig c;
  c.lr = 0.01, c.beta2 = 0.98, c.eps = 1e-9, c.weight_decay = 0.05;
  train::Adam a(cpu, c), b(gpu, c);
  for (int step = 0; step < 5; ++step) {
    for (size_t i = 0; i < cpu.size(); ++i) {
      auto g = torch::randn(cpu[i].sizes());
      cpu[i].mutable_grad() = g;
      gpu[i].mutable_grad() = g.to(kCuda);
    }
    a.step(), b.step();
  }
  for (size_t i = 0; i < cpu.size(); ++i) CHECK(diff(cpu[i], gpu[i]) < 1e-5);
}

TEST_CASE("tiny configs train, evaluate and sample on CUDA", "[cuda][cli]") {
  if (!have_cuda()) return;
  using namespace xformer::testing;
  TempDir tmp("cuda_cli");
  SECTION("translation, bf16 (the default on CUDA)") {
    const std::string run = tmp.str("run");
    auto r = run_xformer("train " + tiny_args(run, tmp.str("spm")) +
                         " --set train.device=cuda --set train.max_steps=60");
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    auto train = read_metrics(run, "train");
    REQUIRE(train.size() == 6);
    CHECK(train.back()["loss"].get<double>() < 0.85 * train.front()["loss"].get<double>());
    r = run_xformer("eval --run '" + run + "' --split test");
    INFO(r.output);
    CHECK(r.exit_code == 0);
    r = run_shell("echo 'Where is the station?' | '" + std::string(XFORMER_BINARY) +
                  "' sample --run '" + run + "' --beam 2 --input - 2>/dev/null");
    CHECK(r.exit_code == 0);
    CHECK(!r.output.empty());
  }
  SECTION("music, fp16 with dynamic loss scaling") {
    const std::string run = tmp.str("music");
    auto r = run_xformer("train --config configs/music/tiny.json --run-dir '" + run +
                         "' --set train.device=cuda --set train.precision=fp16 --set train.max_steps=60");
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    auto train = read_metrics(run, "train");
    REQUIRE(!train.empty());
    CHECK(train.back().contains("loss_scale"));
    CHECK(train.back()["loss"].get<double>() < 0.85 * train.front()["loss"].get<double>());
    r = run_xformer("sample --run '" + run + "' --length 40 --num 2 --out '" + tmp.str("out") + "'");
    INFO(r.output);
    CHECK(r.exit_code == 0);
    CHECK(std::filesystem::exists(tmp.str("out/sample_2.mid")));
  }
  SECTION("music with dropout resumes as it would have gone on (the GPU's random state saved)") {
    // Attention dropout inside the fused kernels draws from the GPU's generator. fp32, so that
    // only the random streams could tell the two runs apart (up to the kernels' own rounding).
    const std::string flags = " --set train.device=cuda --set train.precision=fp32 --set model.dropout=0.1"
                              " --set train.log_every=10 --set train.save_every=20 --set train.eval_every=0";
    const std::string whole = tmp.str("whole"), halves = tmp.str("halves");
    auto r = run_xformer("train --config configs/music/tiny.json --run-dir '" + whole + "'" + flags);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    REQUIRE(run_xformer("train --config configs/music/tiny.json --run-dir '" + halves + "'" + flags +
                        " --set train.max_steps=20").exit_code == 0);
    r = run_xformer("train --config configs/music/tiny.json --run-dir '" + halves + "' --resume" + flags);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    const auto a = read_metrics(whole, "train"), b = read_metrics(halves, "train");
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i)
      CHECK(b[i]["loss"].get<double>() == Approx(a[i]["loss"].get<double>()).epsilon(1e-5));
  }
}

TEST_CASE("SASA attention and a SASA ResNet on CUDA match the CPU", "[cuda]") {
  if (!have_cuda()) return;
  torch::manual_seed(6);
  auto q = torch::randn({2, 2, 4, 9, 7}), k = torch::randn({2, 2, 4, 9, 7}), v = torch::randn({2, 2, 3, 9, 7});
  auto rows = torch::randn({5, 2}), cols = torch::randn({5, 2});
  for (auto* t : {&q, &k, &v, &rows, &cols}) t->requires_grad_(true);
  auto cpu = nn::sasa_attend(q, k, v, rows, cols);  // the CPU kernels
  auto weights = torch::randn_like(cpu);
  auto cpu_grads = torch::autograd::grad({(cpu * weights).sum()}, {q, k, v, rows, cols});
  std::vector<torch::Tensor> on_gpu;
  for (auto* t : {&q, &k, &v, &rows, &cols}) on_gpu.push_back(t->detach().to(kCuda).requires_grad_(true));
  auto gpu = nn::sasa_attend(on_gpu[0], on_gpu[1], on_gpu[2], on_gpu[3], on_gpu[4]);  // the offset loop
  CHECK(diff(cpu, gpu) < 1e-4);
  auto gpu_grads = torch::autograd::grad({(gpu * weights.to(kCuda)).sum()}, on_gpu);
  for (size_t i = 0; i < gpu_grads.size(); ++i) CHECK(diff(cpu_grads[i], gpu_grads[i]) < 1e-4);

  models::ResNetOptions o;
  o.blocks = {1, 1, 1, 1};
  o.width = 8, o.stem_width = 8, o.heads = 2, o.kernel = 3, o.spatial = "attention", o.stem = "attention";
  o.small_images = true, o.classes = 5;
  models::ResNet net(o);
  net->eval();
  torch::NoGradGuard no_grad;
  // Each block's last batch norm starts at zero (so that blocks start as identities), which would
  // hide the blocks' attention layers from the output: give every norm a weight.
  for (auto& p : net->named_parameters())
    if (p.value().dim() == 1 && p.key().size() > 7 && p.key().compare(p.key().size() - 7, 7, ".weight") == 0)
      p.value().uniform_(0.5, 1.5);
  auto net_gpu = moved_to_cuda(net, models::ResNet(o));
  auto images = torch::randn({3, 3, 12, 12});
  CHECK(diff(net(images), net_gpu(images.to(kCuda))) < 1e-4);
}

TEST_CASE("CUDA: a one-rank communicator on the GPU leaves values as they are, its reducer too", "[cuda][distributed]") {
  if (!have_cuda() || !train::distributed_available()) return;
  train::DistributedEnv env;
  env.master_port = xformer::testing::free_port();
  const auto device = device_for_local_rank(kCuda, 0);
  train::Communicator comm(env, device, std::chrono::seconds(60));
  INFO("backend " << comm.backend());  // nccl when built with -DXFORMER_NCCL=ON
  auto a = torch::randn({300}, device), b = torch::randn({7, 40}, device);
  const auto a0 = a.clone(), b0 = b.clone();
  auto wait_a = comm.start_all_reduce(a), wait_b = comm.start_all_reduce(b.view(-1));
  wait_a();
  wait_b();
  CHECK(diff(a, a0) == 0);
  CHECK(diff(b, b0) == 0);
  // Gradients through the reducer's hooks: one rank's sum is its own gradient.
  auto w = torch::randn({5, 3}, device).requires_grad_(true);
  train::GradReducer reducer(comm, {w}, 1 << 20);
  reducer.arm();
  torch::tanh(w).sum().backward();
  CHECK(reducer.first_send_after() == 1);
  reducer.finish();
  CHECK(diff(w.grad(), 1 - torch::tanh(w.detach()).pow(2)) < 1e-6);
  CHECK(comm.all_reduce_values({1.5, -2}) == std::vector<double>{1.5, -2});
  CHECK(comm.broadcast_text("names\nof keys\n") == "names\nof keys\n");
  auto gathered = comm.all_gather(b);
  REQUIRE(gathered.size() == 1);
  CHECK(diff(gathered[0], b0) == 0);
  comm.barrier();
}

TEST_CASE("CUDA: two ranks sharing one GPU train as one process", "[cuda][cli][distributed]") {
  if (!have_cuda() || !train::distributed_available()) return;
  using namespace xformer::testing;
  TempDir tmp("cuda_dist");
  const std::string common = " --set train.device=cuda --set train.precision=fp32 --set train.tf32=false"
                             " --set train.log_every=1 --set train.eval_every=0 --set task.eval_bleu=false"
                             " --set train.update_freq=2 --set task.max_tokens=400 --set train.max_steps=5"
                             " --set train.dist_timeout=120";
  auto one = run_xformer("train " + tiny_args(tmp.str("one"), tmp.str("spm")) + common);
  INFO(one.output);
  REQUIRE(one.exit_code == 0);
  auto two = run_xformer("train --nproc 2 " + tiny_args(tmp.str("two"), tmp.str("spm")) + common);
  INFO(two.output);
  REQUIRE(two.exit_code == 0);
  const auto a = read_metrics(tmp.str("one"), "train"), b = read_metrics(tmp.str("two"), "train");
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i)
    CHECK(b[i]["loss"].get<double>() == Approx(a[i]["loss"].get<double>()).epsilon(1e-4));
}
