// mirrors anofast/reference/diffusion_step.py: one fused, mask-guided diffusion sampler step (one image row per task).
#include <cstdint>
#include <optional>
#include <string>

#include <pybind11/stl.h>

#include "common/buffer.h"
#include "common/hash.h"
#include "common/parallel.h"
#include "common/registry.h"

namespace anofast {
namespace {

// Columns of the (B, K) coefficient table (anofast/reference/diffusion_step.py).
enum Coef { kG, kP0, kP1, kClip, kCX, kC0, kCP, kCZ, kKA, kKS, kNumCoefs };
constexpr uint32_t kStreamDiffusion = 18;  // anofast._rng.Stream.DIFFUSION

struct StepArgs {
  const float* x;
  const float* cond;
  const float* uncond;  // nullptr without guidance
  const float* known;
  const float* mask;
  const float* coefs;
  const int64_t* seeds;
  const float* x0_prev;  // nullptr for single-step updates
  const float* table;
  float* out;
  float* x0_out;  // nullptr when not wanted
  int64_t C, H, W;
  uint32_t step;
};

// The three flags are template parameters so that the row loop has no branch but the mask select.
template <bool kGuided, bool kHasPrev, bool kWantX0>
void step_row(const StepArgs& a, int64_t row) {
  const int64_t HW = a.H * a.W, numel = a.C * HW;
  const int64_t b = row / (a.C * a.H);
  const int64_t in_sample = (row % (a.C * a.H)) * a.W;  // element index of the row's first element in its sample
  const int64_t off = b * numel + in_sample;
  const float* k = a.coefs + b * kNumCoefs;
  const float g = k[kG], p0 = k[kP0], p1 = k[kP1], clip = k[kClip], nclip = -k[kClip];
  const float cx = k[kCX], c0 = k[kC0], cp = k[kCP], cz = k[kCZ], ka = k[kKA], ks = k[kKS];
  const uint32_t skey = rng::stream_key(rng::sample_key(a.seeds[b]), kStreamDiffusion);
  const uint32_t counter0 = a.step * static_cast<uint32_t>(numel) + static_cast<uint32_t>(in_sample);
  const float* m = a.mask + b * HW + (in_sample % HW);
  for (int64_t i = 0; i < a.W; ++i) {
    const int64_t e = off + i;
    float pred = a.cond[e];
    if constexpr (kGuided) {
      const float u = a.uncond[e];
      pred = u + g * (pred - u);
    }
    const float x = a.x[e];
    float x0 = p0 * x + p1 * pred;
    x0 = x0 > nclip ? x0 : nclip;
    x0 = x0 < clip ? x0 : clip;
    const float z = rng::normal(a.table, rng::bits(skey, counter0 + static_cast<uint32_t>(i)));
    float xs = cx * x + c0 * x0;
    if constexpr (kHasPrev) xs = xs + cp * a.x0_prev[e];
    xs = xs + cz * z;
    const float kn = ka * a.known[e] + ks * z;
    a.out[e] = m[i] > 0.5f ? xs : kn;
    if constexpr (kWantX0) a.x0_out[e] = x0;
  }
}

void diffusion_step_cpu(const carray<float>& x, const carray<float>& pred, const carray<float>& known,
                        const carray<float>& mask, const carray<float>& coefs, const carray<int64_t>& seeds,
                        int64_t step, const std::optional<carray<float>>& x0_prev, const carray<float>& table,
                        carray<float>& out, std::optional<carray<float>>& x0_out, int num_threads) {
  check_shape(x, "x", {-1, -1, -1, -1});
  const int64_t B = x.shape(0), C = x.shape(1), H = x.shape(2), W = x.shape(3);
  check_shape(pred, "pred", {-1, C, H, W});
  const bool guided = pred.shape(0) == 2 * B && B > 0;
  if (pred.shape(0) != B && !guided) throw py::value_error("pred: dimension 0 must be B or 2B");
  check_shape(known, "known", {B, C, H, W});
  check_shape(mask, "mask", {B, 1, H, W});
  check_shape(coefs, "coefs", {B, kNumCoefs});
  check_shape(seeds, "seeds", {B});
  check_shape(table, "table", {(1 << rng::kNormalTableBits) + 1});
  check_shape(out, "out", {B, C, H, W});
  if (x0_prev) check_shape(*x0_prev, "x0_prev", {B, C, H, W});
  if (x0_out) check_shape(*x0_out, "x0_out", {B, C, H, W});
  if (step < 0 || (step + 1) * C * H * W > (int64_t{1} << 32)) throw py::value_error("step overflows the noise counter");
  const StepArgs a{x.data(),
                   pred.data(),
                   guided ? pred.data() + B * C * H * W : nullptr,
                   known.data(),
                   mask.data(),
                   coefs.data(),
                   seeds.data(),
                   x0_prev ? x0_prev->data() : nullptr,
                   table.data(),
                   mut(out),
                   x0_out ? mut(*x0_out) : nullptr,
                   C,
                   H,
                   W,
                   static_cast<uint32_t>(step)};
  using RowFn = void (*)(const StepArgs&, int64_t);
  static constexpr RowFn kRows[8] = {step_row<false, false, false>, step_row<false, false, true>,
                                     step_row<false, true, false>,  step_row<false, true, true>,
                                     step_row<true, false, false>,  step_row<true, false, true>,
                                     step_row<true, true, false>,   step_row<true, true, true>};
  const RowFn row_fn = kRows[(guided ? 4 : 0) + (x0_prev ? 2 : 0) + (x0_out ? 1 : 0)];
  py::gil_scoped_release release;
  parallel_for(B * C * H, num_threads, [&](int64_t row) { row_fn(a, row); });
}

void register_diffusion_step(py::module_& m) {
  m.def("diffusion_step_cpu", &diffusion_step_cpu, py::arg("x").noconvert(), py::arg("pred").noconvert(),
        py::arg("known").noconvert(), py::arg("mask").noconvert(), py::arg("coefs").noconvert(),
        py::arg("seeds").noconvert(), py::arg("step"), py::arg("x0_prev").noconvert(), py::arg("table").noconvert(),
        py::arg("out").noconvert(), py::arg("x0_out").noconvert(), py::arg("num_threads"));
}
ANOFAST_REGISTER(register_diffusion_step);

}  // namespace
}  // namespace anofast
