// mirrors anofast/reference/poisson.py: binding of poisson_blend_cpu (one sample's patch rounds per task).
#include "poisson/poisson.h"

#include <optional>
#include <string>

#include <pybind11/stl.h>

#include "common/buffer.h"
#include "common/parallel.h"
#include "common/registry.h"

namespace anofast {
namespace {

// A C-contiguous float32 or uint8 array of the given rank and leading dimensions (-1: any), as an Image.
poisson::Image image_arg(const py::array& a, const char* name, std::vector<int64_t> dims) {
  const bool f32 = py::isinstance<carray<float>>(a), u8 = py::isinstance<carray<uint8_t>>(a);
  if (!(f32 || u8) || !(a.flags() & py::array::c_style)) {
    throw py::type_error(std::string(name) + ": expected a C-contiguous float32 or uint8 array");
  }
  if (a.ndim() != static_cast<py::ssize_t>(dims.size())) throw py::value_error(std::string(name) + ": wrong rank");
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] >= 0 && a.shape(i) != dims[i]) {
      throw py::value_error(std::string(name) + ": dimension " + std::to_string(i) + " must be " +
                            std::to_string(dims[i]) + ", got " + std::to_string(a.shape(i)));
    }
  }
  if (f32) return {static_cast<const float*>(a.data()), nullptr};
  return {nullptr, static_cast<const uint8_t*>(a.data())};
}

// init: optional uint8 (B, C, H, W); each task first writes its sample's float32 conversion into out.
void poisson_blend_cpu(carray<float>& out, const std::optional<carray<uint8_t>>& init, const py::array& original,
                       carray<float>& mask,
                       std::optional<carray<float>> diff, const py::array& source,
                       const carray<int32_t>& src_index, const carray<int32_t>& src_box, const carray<float>& scale,
                       const carray<int32_t>& box, const carray<int32_t>& mode,
                       const std::optional<carray<uint8_t>>& region, float tol_sum, int cycles, int num_threads) {
  check_shape(out, "out", {-1, -1, -1, -1});
  const int64_t B = out.shape(0), C = out.shape(1), H = out.shape(2), W = out.shape(3);
  if (init) check_shape(*init, "init", {B, C, H, W});
  const poisson::Image orig = image_arg(original, "original", {B, C, H, W});
  check_shape(mask, "mask", {B, 1, H, W});
  if (diff) check_shape(*diff, "diff", {B, 1, H, W});
  const poisson::Image src = image_arg(source, "source", {-1, C, -1, -1});
  const int64_t N = source.shape(0), hs = source.shape(2), ws = source.shape(3);
  check_shape(box, "box", {B, -1, 4});
  const int64_t K = box.shape(1);  // patch rounds
  check_shape(src_index, "src_index", {B});
  check_shape(src_box, "src_box", {B, K, 4});
  check_shape(scale, "scale", {B, K, 2});
  check_shape(mode, "mode", {B});
  if (region) check_shape(*region, "region", {B, 1, H, W});
  if (cycles < 0) throw py::value_error("cycles must be >= 0");
  const int32_t* bx = box.data();
  const int32_t* sb = src_box.data();
  const int32_t* si = src_index.data();
  for (int64_t t = 0; t < B * K; ++t) {
    const int32_t* q = bx + 4 * t;
    const int32_t* s = sb + 4 * t;
    const int32_t n = si[t / K];
    if (q[0] < 0 || q[1] < 0 || q[2] < 0 || q[3] < 0 || q[0] + q[2] > H || q[1] + q[3] > W) {
      throw py::value_error("box rows (y0, x0, h, w) must lie inside the image");
    }
    if (q[2] > 0 && q[3] > 0 && (n < 0 || n >= N || s[0] < 0 || s[1] < 0 || s[2] < 1 || s[3] < 1 ||
                                 s[0] + s[2] > hs || s[1] + s[3] > ws)) {
      throw py::value_error("src_index / src_box rows must lie inside the source images");
    }
  }
  float* o = mut(out);
  float* m = mut(mask);
  float* d = diff ? mut(*diff) : nullptr;
  const float* sc = scale.data();
  const uint8_t* reg = region ? region->data() : nullptr;
  const uint8_t* ini = init ? init->data() : nullptr;
  const int32_t* md = mode.data();
#ifdef ANOFAST_X86_SIMD
  const bool avx2 = simd::use_avx2();  // read once per call (it checks ANOFAST_NO_AVX2)
#else
  const bool avx2 = false;
#endif
  py::gil_scoped_release release;
  // one task per sample: its rounds in order, each on top of the previous one
  parallel_for(B, num_threads, [&](int64_t b) {
    thread_local poisson::Workspace wsp;
    if (ini) poisson::to_unit_float(o + b * C * H * W, ini + b * C * H * W, C * H * W);
    for (int64_t r = b * K; r < (b + 1) * K; ++r) {
      if (bx[4 * r + 2] <= 0 || bx[4 * r + 3] <= 0) continue;
      poisson::blend_patch(wsp, o + b * C * H * W, orig.at(b * C * H * W), m + b * H * W,
                           d ? d + b * H * W : nullptr, reg ? reg + b * H * W : nullptr, src.at(si[b] * C * hs * ws),
                           C, H, W, hs, ws, sb + 4 * r, sc[2 * r], sc[2 * r + 1], bx + 4 * r, md[b] != 0, tol_sum,
                           cycles, avx2);
    }
  });
}

void register_poisson(py::module_& m) {
  m.def("poisson_blend_cpu", &poisson_blend_cpu, py::arg("out").noconvert(), py::arg("init").noconvert(),
        py::arg("original").noconvert(),
        py::arg("mask").noconvert(), py::arg("diff").noconvert(), py::arg("source").noconvert(), py::arg("src_index").noconvert(),
        py::arg("src_box").noconvert(), py::arg("scale").noconvert(), py::arg("box").noconvert(),
        py::arg("mode").noconvert(), py::arg("region").noconvert(), py::arg("tol_sum"), py::arg("cycles"),
        py::arg("num_threads"));
}
ANOFAST_REGISTER(register_poisson);

}  // namespace
}  // namespace anofast
