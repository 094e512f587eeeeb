// mirrors anofast/reference/object_mask.py: binding of object_mask_cpu (one band of image rows per task).
#include "object_mask/object_mask.h"

#include <algorithm>
#include <cstdint>
#include <string>

#include "common/buffer.h"
#include "common/parallel.h"
#include "common/registry.h"
#include "common/simd.h"

namespace anofast {
namespace {

using object_mask::Args;
using BandFn = void (*)(const Args&, int64_t);

template <int KC, typename U, typename O>
void band_base(const Args& a, int64_t task) {
  object_mask::band<KC, U, O>(a, task);
}

#ifdef ANOFAST_AVX2_COPY
template <int KC, typename U, typename O>
__attribute__((target("avx2"))) void band_avx2(const Args& a, int64_t task) {
  object_mask::band<KC, U, O>(a, task);
}
#endif

// The instance for C channels: 1 and 3 at compile time, 16-bit channel sums while 255 C fits; output type O.
template <typename O>
BandFn pick(int64_t C, bool avx2) {
#ifdef ANOFAST_AVX2_COPY
  if (avx2) {
    if (C == 1) return band_avx2<1, uint16_t, O>;
    if (C == 3) return band_avx2<3, uint16_t, O>;
    return C <= 257 ? band_avx2<0, uint16_t, O> : band_avx2<0, uint32_t, O>;
  }
#else
  (void)avx2;
#endif
  if (C == 1) return band_base<1, uint16_t, O>;
  if (C == 3) return band_base<3, uint16_t, O>;
  return C <= 257 ? band_base<0, uint16_t, O> : band_base<0, uint32_t, O>;
}

// out: (B, 1, H, W) float32 or uint8, C-contiguous.
void object_mask_cpu(const carray<uint8_t>& images, const carray<int32_t>& table, int64_t median, py::array& out,
                     int num_threads) {
  check_shape(images, "images", {-1, -1, -1, -1});
  const int64_t batch = images.shape(0), C = images.shape(1), H = images.shape(2), W = images.shape(3);
  check_shape(table, "table", {-1, 2});
  const bool f32 = py::isinstance<carray<float>>(out), u8 = py::isinstance<carray<uint8_t>>(out);
  if (!(f32 || u8) || !(out.flags() & py::array::c_style)) {
    throw py::type_error("out: expected a C-contiguous float32 or uint8 array");
  }
  if (out.ndim() != 4 || out.shape(0) != batch || out.shape(1) != 1 || out.shape(2) != H || out.shape(3) != W) {
    throw py::value_error("out: expected shape (B, 1, H, W) of the images");
  }
  const int64_t P = table.shape(0);
  if (C < 1 || C > (int64_t{1} << 23)) throw py::value_error("images: the channel count must lie in [1, 2^23]");
  if (P < 1) throw py::value_error("table: needs at least one (lo, hi) row");
  if (median < 1 || median > 63 || median % 2 == 0) {
    throw py::value_error("median must be an odd int in [1, 63], got " + std::to_string(median));
  }
  const int32_t* t = table.data();
  for (int64_t p = 0; p < P; ++p) {
    // background_table's range: lo in [0, 255 C + 1], hi in [-1, 255 C], lo <= hi + 1.
    const int64_t lo = t[2 * p], hi = t[2 * p + 1];
    if (lo < 0 || lo > 255 * C + 1 || hi < -1 || hi > 255 * C || lo > hi + 1) {
      throw py::value_error("table: row " + std::to_string(p) + " (" + std::to_string(lo) + ", " +
                            std::to_string(hi) + ") is outside the range background_table gives");
    }
  }
  if (batch == 0 || H == 0 || W == 0) return;
  // Bands: whole images while the batch alone gives every thread a few tasks, else bands of at least 32 rows.
  const int64_t r = median / 2;
  int64_t bands = std::max<int64_t>(1, (4 * static_cast<int64_t>(num_threads) + batch - 1) / batch);
  bands = std::min(bands, std::max<int64_t>(1, H / std::max<int64_t>(32, 2 * r + 1)));
  const int64_t band_rows = (H + bands - 1) / bands;
  bands = (H + band_rows - 1) / band_rows;
  bool avx2 = false;
#ifdef ANOFAST_AVX2_COPY
  avx2 = simd::use_avx2();
#endif
  const BandFn fn = f32 ? pick<float>(C, avx2) : pick<uint8_t>(C, avx2);
  const Args args{out.mutable_data(), images.data(), t, P, C, H, W, median, band_rows, bands};
  py::gil_scoped_release release;
  parallel_for(batch * bands, num_threads, [&](int64_t task) { fn(args, task); });
}

void register_object_mask(py::module_& m) {
  m.def("object_mask_cpu", &object_mask_cpu, py::arg("images").noconvert(), py::arg("table").noconvert(),
        py::arg("median"), py::arg("out").noconvert(), py::arg("num_threads"));
}
ANOFAST_REGISTER(register_object_mask);

}  // namespace
}  // namespace anofast
