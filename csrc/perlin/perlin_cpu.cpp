// mirrors anofast/reference/perlin.py: bindings of perlin_noise_cpu and perlin_mask_cpu (one row per task).
// 8-wide vectors only cross always-inlined helpers, so GCC's note on their calling convention does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

#include "perlin/perlin.h"

#include <optional>
#include <string>

#include <pybind11/stl.h>

#include "common/buffer.h"
#include "common/parallel.h"
#include "common/registry.h"
#include "common/simd.h"

namespace anofast {
namespace {

using perlin::Frame;
using perlin::kG1;
using perlin::Lattice;
using simd::kWidth;

Frame make_frame(int64_t height, int64_t width) {
  return Frame{height, width, static_cast<float>(width - 1) * 0.5f, static_cast<float>(height - 1) * 0.5f,
               static_cast<float>(width - 1), static_cast<float>(height - 1)};
}

Lattice lattice(const int32_t* res, const float* grads, const float* frame, int64_t bl) {
  return Lattice{grads + bl * kG1 * kG1 * 2, res[2 * bl], res[2 * bl + 1],
                 frame[4 * bl], frame[4 * bl + 1], frame[4 * bl + 2], frame[4 * bl + 3]};
}

// Checks the shared parameter arrays; returns (B, L).
std::pair<int64_t, int64_t> check_params(const carray<int32_t>& res, const carray<float>& grads,
                                         const carray<float>& frame) {
  check_shape(res, "res", {-1, -1, 2});
  const int64_t batch = res.shape(0), lat = res.shape(1);
  check_shape(grads, "grads", {batch, lat, kG1, kG1, 2});
  check_shape(frame, "frame", {batch, lat, 4});
  const int32_t* r = res.data();
  for (int64_t k = 0; k < batch * lat * 2; ++k) {
    if (r[k] < 1 || r[k] > kG1 - 1) throw py::value_error("res must lie in [1, " + std::to_string(kG1 - 1) + "]");
  }
  return {batch, lat};
}

void noise_row_base(float* out, const Lattice& L, const Frame& F, int64_t y) {
  perlin::noise_span<kWidth>(out, L, F, y, 0, F.width);
}

void mask_row_base(float* mask, int32_t* ext, const Lattice* lats, int32_t combine, float threshold, const float* fg,
                   const Frame& F, int64_t y) {
  perlin::mask_row<kWidth>(mask, ext, lats, combine, threshold, fg, F, y);
}

#ifdef ANOFAST_AVX2_COPY
__attribute__((target("avx2"))) void noise_row_avx2(float* out, const Lattice& L, const Frame& F, int64_t y) {
  perlin::noise_span<8>(out, L, F, y, 0, F.width);
}

__attribute__((target("avx2"))) void mask_row_avx2(float* mask, int32_t* ext, const Lattice* lats, int32_t combine,
                                                    float threshold, const float* fg, const Frame& F, int64_t y) {
  perlin::mask_row<8>(mask, ext, lats, combine, threshold, fg, F, y);
}
#endif

using NoiseRowFn = void (*)(float*, const Lattice&, const Frame&, int64_t);
using MaskRowFn = void (*)(float*, int32_t*, const Lattice*, int32_t, float, const float*, const Frame&, int64_t);

NoiseRowFn noise_row_fn() {
#ifdef ANOFAST_AVX2_COPY
  if (simd::use_avx2()) return noise_row_avx2;
#endif
  return noise_row_base;
}

MaskRowFn mask_row_fn() {
#ifdef ANOFAST_AVX2_COPY
  if (simd::use_avx2()) return mask_row_avx2;
#endif
  return mask_row_base;
}

void perlin_noise_cpu(const carray<int32_t>& res, const carray<float>& grads, const carray<float>& frame,
                      carray<float>& out, int num_threads) {
  const auto [batch, lat] = check_params(res, grads, frame);
  check_shape(out, "out", {batch, lat, -1, -1});
  const Frame F = make_frame(out.shape(2), out.shape(3));
  float* o = mut(out);
  const int32_t* r = res.data();
  const float* g = grads.data();
  const float* f = frame.data();
  const NoiseRowFn noise_row = noise_row_fn();
  py::gil_scoped_release release;
  parallel_for(batch * lat * F.height, num_threads, [&](int64_t row) {
    noise_row(o + row * F.width, lattice(r, g, f, row / F.height), F, row % F.height);
  });
}

void perlin_mask_cpu(const carray<int32_t>& res, const carray<float>& grads, const carray<float>& frame,
                     const carray<float>& threshold, const carray<int32_t>& combine,
                     const std::optional<carray<float>>& foreground, const carray<uint8_t>& apply, carray<float>& mask,
                     carray<int32_t>& extents, int num_threads) {
  const auto [batch, lat] = check_params(res, grads, frame);
  check_shape(threshold, "threshold", {batch});
  check_shape(combine, "combine", {batch});
  check_shape(apply, "apply", {batch});
  check_shape(mask, "mask", {batch, 1, -1, -1});
  const int64_t H = mask.shape(2), W = mask.shape(3);
  check_shape(extents, "extents", {batch, H, 2});
  if (foreground) check_shape(*foreground, "foreground", {batch, H, W});
  const int32_t* c = combine.data();
  for (int64_t b = 0; b < batch; ++b) {
    if (c[b] < 0 || c[b] > 2 || (c[b] != 0 && lat < 2)) throw py::value_error("combine must be 0, 1 or 2 (0 if L=1)");
  }
  const float* fg = foreground ? foreground->data() : nullptr;
  float* m = mut(mask);
  int32_t* e = mut(extents);
  const int32_t* r = res.data();
  const float* g = grads.data();
  const float* f = frame.data();
  const float* t = threshold.data();
  const uint8_t* a = apply.data();
  const Frame F = make_frame(H, W);
  const MaskRowFn mask_row = mask_row_fn();
  py::gil_scoped_release release;
  parallel_for(batch * H, num_threads, [&](int64_t row) {
    const int64_t b = row / H;
    float* mrow = m + row * W;
    int32_t* erow = e + 2 * row;
    if (!a[b]) {
      std::fill(mrow, mrow + W, 0.0f);
      erow[0] = static_cast<int32_t>(W);
      erow[1] = 0;
      return;
    }
    const Lattice lats[2] = {lattice(r, g, f, b * lat), lattice(r, g, f, b * lat + (lat > 1 ? 1 : 0))};
    mask_row(mrow, erow, lats, c[b], t[b], fg == nullptr ? nullptr : fg + row * W, F, row % H);
  });
}

void register_perlin(py::module_& m) {
  m.def("perlin_noise_cpu", &perlin_noise_cpu, py::arg("res").noconvert(), py::arg("grads").noconvert(),
        py::arg("frame").noconvert(), py::arg("out").noconvert(), py::arg("num_threads"));
  m.def("perlin_mask_cpu", &perlin_mask_cpu, py::arg("res").noconvert(), py::arg("grads").noconvert(),
        py::arg("frame").noconvert(), py::arg("threshold").noconvert(), py::arg("combine").noconvert(),
        py::arg("foreground").noconvert(), py::arg("apply").noconvert(), py::arg("mask").noconvert(),
        py::arg("extents").noconvert(), py::arg("num_threads"));
}
ANOFAST_REGISTER(register_perlin);

}  // namespace
}  // namespace anofast
