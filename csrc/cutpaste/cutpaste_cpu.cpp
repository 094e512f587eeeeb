// mirrors anofast/reference/cutpaste.py: binding of cutpaste_cpu (contrast means per sample, then one row per task).
// 8-wide vectors only cross always-inlined helpers, so GCC's note on their calling convention does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

#include "cutpaste/cutpaste.h"

#include <optional>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "common/buffer.h"
#include "common/parallel.h"
#include "common/registry.h"
#include "common/simd.h"

namespace anofast {
namespace {

using simd::kWidth;

using MeanFn = float (*)(const float*, int64_t, int64_t, const int32_t*, const float*, const cutpaste::Jitter&);
using RowFn = int32_t (*)(float*, float*, const float*, const float*, int64_t, int64_t, int64_t, const int32_t*,
                          const float*, const cutpaste::Jitter&);

template <int C>
float mean_base(const float* img, int64_t H, int64_t W, const int32_t* q, const float* f,
                const cutpaste::Jitter& pre) {
  return cutpaste::contrast_mean<C, kWidth>(img, H, W, q, f, pre);
}

// Row y of one sample: out, mask and img point at the sample.
template <int C>
int32_t row_base(float* out, float* mask, const float* img, const float* fg, int64_t H, int64_t W, int64_t y,
                 const int32_t* q, const float* f, const cutpaste::Jitter& ops) {
  return cutpaste::paste_row<C, kWidth>(out + y * W, H * W, mask + y * W, img, fg, H, W, y, q, f, ops);
}

#ifdef ANOFAST_AVX2_COPY
template <int C>
__attribute__((target("avx2"))) float mean_avx2(const float* img, int64_t H, int64_t W, const int32_t* q,
                                                 const float* f, const cutpaste::Jitter& pre) {
  return cutpaste::contrast_mean<C, 8>(img, H, W, q, f, pre);
}

// (Streaming the row out with non-temporal stores from a stack buffer was tried: slower on the 2-core EPYC.)
template <int C>
__attribute__((target("avx2"))) int32_t row_avx2(float* out, float* mask, const float* img, const float* fg,
                                                  int64_t H, int64_t W, int64_t y, const int32_t* q, const float* f,
                                                  const cutpaste::Jitter& ops) {
  return cutpaste::paste_row<C, 8>(out + y * W, H * W, mask + y * W, img, fg, H, W, y, q, f, ops);
}
#endif

template <int C>
void cutpaste_impl(float* out, float* mask, int32_t* counts, const float* img, const int32_t* ints,
                   const float* floats, const float* fg, int64_t batch, int64_t H, int64_t W, int num_threads) {
  using namespace cutpaste;
  MeanFn mean_fn = mean_base<C>;
  RowFn row_fn = row_base<C>;
#ifdef ANOFAST_AVX2_COPY
  if (simd::use_avx2()) {
    mean_fn = mean_avx2<C>;
    row_fn = row_avx2<C>;
  }
#endif
  std::vector<Jitter> ops(static_cast<size_t>(batch)), pre(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) jitter_lists(ints + b * kInts, floats + b * kFloats, C, &ops[b], &pre[b]);
  parallel_for(batch, num_threads, [&](int64_t b) {
    const int32_t* q = ints + b * kInts;
    const float* f = floats + b * kFloats;
    if (q[kBoxH] > 0 && q[kBoxW] > 0) {
      ops[b].contrast_add = f[kOneMinusContrast] * mean_fn(img + b * C * H * W, H, W, q, f, pre[b]);
    }
  });
  parallel_for(batch * H, num_threads, [&](int64_t row) {
    const int64_t b = row / H, y = row % H;
    const int64_t off = b * C * H * W;
    counts[row] = row_fn(out + off, mask + b * H * W, img + off, fg == nullptr ? nullptr : fg + b * H * W, H, W, y,
                         ints + b * kInts, floats + b * kFloats, ops[b]);
  });
}

void cutpaste_cpu(const carray<float>& images, const carray<int32_t>& ints, const carray<float>& floats,
                  const std::optional<carray<float>>& foreground, carray<float>& out, carray<float>& mask,
                  carray<int32_t>& counts, int num_threads) {
  using namespace cutpaste;
  check_shape(images, "images", {-1, -1, -1, -1});
  const int64_t batch = images.shape(0), C = images.shape(1), H = images.shape(2), W = images.shape(3);
  if (C != 1 && C != 3) throw py::value_error("images must have 1 or 3 channels, got " + std::to_string(C));
  check_shape(ints, "ints", {batch, kInts});
  check_shape(floats, "floats", {batch, kFloats});
  check_shape(out, "out", {batch, C, H, W});
  check_shape(mask, "mask", {batch, 1, H, W});
  check_shape(counts, "counts", {batch, H});
  if (H * W >= (int64_t{1} << 31)) throw py::value_error("images: H * W must be below 2^31");
  const int32_t* q = ints.data();
  for (int64_t b = 0; b < batch; ++b) {  // the crop is read: it must lie inside the image
    const int32_t* r = q + b * kInts;
    if (r[kBoxH] > 0 && r[kBoxW] > 0 &&
        (r[kSrcY] < 0 || r[kSrcX] < 0 || r[kCropH] < 1 || r[kCropW] < 1 || r[kSrcY] + r[kCropH] > H ||
         r[kSrcX] + r[kCropW] > W)) {
      throw py::value_error("ints: each used crop must lie inside the image");
    }
    for (int k = 0; k < 4; ++k) {
      if (r[kOrder + k] < 0 || r[kOrder + k] > 3) throw py::value_error("ints: jitter op ids must be in 0..3");
    }
  }
  const float* fg = nullptr;
  if (foreground) {
    check_shape(*foreground, "foreground", {batch, 1, H, W});
    fg = foreground->data();
  }
  float* o = mut(out);
  float* m = mut(mask);
  int32_t* n = mut(counts);
  const float* i = images.data();
  const float* f = floats.data();
  py::gil_scoped_release release;
  if (C == 3) {
    cutpaste_impl<3>(o, m, n, i, q, f, fg, batch, H, W, num_threads);
  } else {
    cutpaste_impl<1>(o, m, n, i, q, f, fg, batch, H, W, num_threads);
  }
}

void register_cutpaste(py::module_& m) {
  m.def("cutpaste_cpu", &cutpaste_cpu, py::arg("images").noconvert(), py::arg("ints").noconvert(),
        py::arg("floats").noconvert(), py::arg("foreground").noconvert(), py::arg("out").noconvert(),
        py::arg("mask").noconvert(), py::arg("counts").noconvert(), py::arg("num_threads"));
}
ANOFAST_REGISTER(register_cutpaste);

}  // namespace
}  // namespace anofast
