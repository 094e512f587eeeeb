// mirrors anofast/reference/blend.py: binding of blend_cpu (one image row per task).
// 8-wide vectors only cross always-inlined helpers, so GCC's note on their calling convention does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

#include "blend/blend.h"

#include <optional>
#include <string>

#include <pybind11/stl.h>

#include "common/buffer.h"
#include "common/parallel.h"
#include "common/registry.h"
#include "common/simd.h"

namespace anofast {
namespace {

using simd::kWidth;

using RowFn = int32_t (*)(const blend::Row&, float, int64_t, int64_t, int64_t);

template <int C>
int32_t row_base(const blend::Row& r, float opacity, int64_t width, int64_t x0, int64_t x1) {
  return blend::blend_row<C, kWidth>(r, opacity, width, x0, x1);
}

#ifdef ANOFAST_AVX2_COPY
template <int C>
__attribute__((target("avx2"))) int32_t row_avx2(const blend::Row& r, float opacity, int64_t width, int64_t x0,
                                                  int64_t x1) {
  return blend::blend_row<C, 8>(r, opacity, width, x0, x1);
}
#endif

template <int C>
RowFn row_fn() {
#ifdef ANOFAST_AVX2_COPY
  if (simd::use_avx2()) return row_avx2<C>;
#endif
  return row_base<C>;
}

template <int C>
void blend_rows(float* out, float* mask, int32_t* counts, const float* img, const uint8_t* tex, const float* place,
                const float* opacity, const int32_t* bbox, int64_t batch, int64_t H, int64_t W, int num_threads) {
  const RowFn blend_one_row = row_fn<C>();
  parallel_for(batch * H, num_threads, [&](int64_t row) {
    const int64_t b = row / H, y = row % H;
    const int64_t off = (b * C * H + y) * W;  // channel 0 of this row
    const blend::Row r{out + off, mask + row * W, img + off, tex + off, place + row * W, H * W};
    int64_t x0 = 0, x1 = W;
    if (bbox != nullptr) {
      const int32_t* box = bbox + 4 * b;  // (y0, x0, y1, x1), checked by the caller
      const bool in_rows = y >= box[0] && y < box[2];
      x0 = in_rows ? box[1] : 0;
      x1 = in_rows ? box[3] : 0;
    }
    counts[row] = blend_one_row(r, opacity[b], W, x0, x1);
  });
}

void blend_cpu(const carray<float>& images, const carray<uint8_t>& texture, const carray<float>& placement,
               const carray<float>& opacity, const std::optional<carray<int32_t>>& bbox, carray<float>& out,
               carray<float>& mask, carray<int32_t>& counts, int num_threads) {
  check_shape(images, "images", {-1, -1, -1, -1});
  const int64_t batch = images.shape(0), C = images.shape(1), H = images.shape(2), W = images.shape(3);
  if (C != 1 && C != 3) throw py::value_error("images must have 1 or 3 channels, got " + std::to_string(C));
  check_shape(texture, "texture", {batch, C, H, W});
  check_shape(placement, "placement", {batch, 1, H, W});
  check_shape(opacity, "opacity", {batch});
  check_shape(out, "out", {batch, C, H, W});
  check_shape(mask, "mask", {batch, 1, H, W});
  check_shape(counts, "counts", {batch, H});
  const int32_t* box = nullptr;
  if (bbox) {
    check_shape(*bbox, "bbox", {batch, 4});
    box = bbox->data();
    for (int64_t b = 0; b < batch; ++b) {
      const int32_t* q = box + 4 * b;
      if (q[0] < 0 || q[1] < 0 || q[0] > q[2] || q[1] > q[3] || q[2] > H || q[3] > W) {
        throw py::value_error("bbox rows must satisfy 0 <= y0 <= y1 <= H and 0 <= x0 <= x1 <= W");
      }
    }
  }
  float* o = mut(out);
  float* m = mut(mask);
  int32_t* n = mut(counts);
  const float* i = images.data();
  const uint8_t* t = texture.data();
  const float* p = placement.data();
  const float* a = opacity.data();
  py::gil_scoped_release release;
  if (C == 3) {
    blend_rows<3>(o, m, n, i, t, p, a, box, batch, H, W, num_threads);
  } else {
    blend_rows<1>(o, m, n, i, t, p, a, box, batch, H, W, num_threads);
  }
}

void register_blend(py::module_& m) {
  m.def("blend_cpu", &blend_cpu, py::arg("images").noconvert(), py::arg("texture").noconvert(),
        py::arg("placement").noconvert(), py::arg("opacity").noconvert(), py::arg("bbox").noconvert(),
        py::arg("out").noconvert(), py::arg("mask").noconvert(), py::arg("counts").noconvert(),
        py::arg("num_threads"));
}
ANOFAST_REGISTER(register_blend);

}  // namespace
}  // namespace anofast
