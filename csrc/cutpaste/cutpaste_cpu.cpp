// mirrors anofast/reference/cutpaste.py: binding of cutpaste_cpu (contrast means per sample, then one row per task).
#include "cutpaste/cutpaste.h"

#include <optional>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "common/buffer.h"
#include "common/parallel.h"
#include "common/registry.h"

namespace anofast {
namespace {

template <int C>
void cutpaste_impl(float* out, float* mask, int32_t* counts, const float* img, const int32_t* ints,
                   const float* floats, const float* fg, int64_t batch, int64_t H, int64_t W, int num_threads) {
  using namespace cutpaste;
  std::vector<float> contrast_add(static_cast<size_t>(batch), 0.0f);
  parallel_for(batch, num_threads, [&](int64_t b) {
    const int32_t* q = ints + b * kInts;
    const float* f = floats + b * kFloats;
    if (q[kBoxH] > 0 && q[kBoxW] > 0) {
      contrast_add[b] = f[kOneMinusContrast] * contrast_mean<C>(img + b * C * H * W, H, W, q, f);
    }
  });
  parallel_for(batch * H, num_threads, [&](int64_t row) {
    const int64_t b = row / H, y = row % H;
    const int64_t off = b * C * H * W;
    counts[row] = paste_row<C>(out + off, mask + b * H * W, img + off, fg == nullptr ? nullptr : fg + b * H * W, H,
                               W, y, ints + b * kInts, floats + b * kFloats, contrast_add[b]);
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
