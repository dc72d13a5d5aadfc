// batched_matmul against torch::matmul: values and gradients, for the strided views attention
// passes (split heads, transposed keys) and for layouts BLAS cannot read in place.
#include "test_support.h"

#include <functional>

#include "xformer/nn/batched_matmul.h"

using xformer::nn::batched_matmul;
using xformer::testing::max_abs_diff;

namespace {

using View = std::function<torch::Tensor(const torch::Tensor&)>;
const View same = [](const torch::Tensor& x) { return x; };

// Checks batched_matmul(fa(a), fb(b)) == torch::matmul(fa(a), fb(b)) and both gradients with
// respect to a and b; fa, fb make the (strided) views under test from the leaf tensors.
void check_parity(const torch::Tensor& a, const View& fa, const torch::Tensor& b, const View& fb) {
  auto a1 = a.clone().requires_grad_(true), b1 = b.clone().requires_grad_(true);
  auto a2 = a.clone().requires_grad_(true), b2 = b.clone().requires_grad_(true);
  auto ours = batched_matmul(fa(a1), fb(b1));
  auto ref = torch::matmul(fa(a2), fb(b2));
  REQUIRE(ours.sizes() == ref.sizes());
  CHECK(max_abs_diff(ours, ref) < 1e-4);
  auto w = torch::randn(ref.sizes(), ref.options());
  (ours * w).sum().backward();
  (ref * w).sum().backward();
  CHECK(max_abs_diff(a1.grad(), a2.grad()) < 1e-4);
  CHECK(max_abs_diff(b1.grad(), b2.grad()) < 1e-4);
}

}  // namespace

TEST_CASE("batched_matmul equals torch::matmul on attention's strided views", "[nn][matmul]") {
  torch::manual_seed(21);
  const int64_t B = 3, T = 5, S = 7, H = 2, Dh = 4;
  // Split heads: (B, T, H*Dh) viewed as (B, H, T, Dh) without a copy.
  auto split = [&](const torch::Tensor& x) {
    return x.view({x.size(0), x.size(1), H, Dh}).transpose(1, 2);
  };
  auto q = torch::randn({B, T, H * Dh}), k = torch::randn({B, S, H * Dh});
  SECTION("scores q kᵀ: split heads by transposed split heads") {
    check_parity(q, split, k, [&](const torch::Tensor& x) { return split(x).transpose(-2, -1); });
  }
  SECTION("context p v") {
    check_parity(torch::softmax(torch::randn({B, H, T, S}), -1), same, k, split);
  }
  SECTION("3-d contiguous") {
    check_parity(torch::randn({4, 3, 6}), same, torch::randn({4, 6, 2}), same);
  }
  SECTION("single rows and columns") {
    check_parity(torch::randn({2, 1, 6}), same, torch::randn({2, 6, 1}), same);
  }
  SECTION("1 x 1 matrices whose strides are both not 1") {
    check_parity(torch::randn({3, 4, 4}), [](const torch::Tensor& x) { return x.slice(1, 0, 4, 2).slice(2, 0, 4, 3).narrow(1, 0, 1).narrow(2, 0, 1); },
                 torch::randn({3, 1, 5}), same);
  }
  SECTION("a layout BLAS cannot read (every other column) is copied first") {
    check_parity(torch::randn({2, 3, 12}), [](const torch::Tensor& x) { return x.slice(2, 0, 12, 2); },
                 torch::randn({2, 6, 4}), same);
  }
}

TEST_CASE("batched_matmul falls back to torch::matmul for other dtypes, and checks shapes",
          "[nn][matmul]") {
  auto a = torch::randn({2, 3, 4}, torch::kDouble), b = torch::randn({2, 4, 5}, torch::kDouble);
  CHECK(max_abs_diff(batched_matmul(a, b), torch::matmul(a, b)) < 1e-12);
  CHECK_THROWS_WITH(batched_matmul(torch::randn({2, 3, 4}), torch::randn({3, 4, 5})),
                    Catch::Contains("[2, 3, 4]") && Catch::Contains("[3, 4, 5]"));
  CHECK_THROWS_WITH(batched_matmul(torch::randn({2, 3, 4}), torch::randn({2, 5, 5})),
                    Catch::Contains("equal batch dims"));
}
