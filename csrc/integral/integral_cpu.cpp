// mirrors anofast/reference/integral.py (integral_image_reference): the summed-area table of a uint8 mask.
//
// One image per task. Per image: the zero row, then for every mask row y a running row sum added to the previous
// output row, out[y + 1][x + 1] = out[y][x + 1] + #{x' <= x : mask[y][x'] != 0}: one forward pass that writes each
// output once (the previous output row is still in L1). On x86-64 (SSE2, the baseline) 16 columns at a time: the
// bytes become 0 / 1, their prefix within the vector is four shifted byte adds (counts <= 16, no carry between
// bytes), widened to four int32 vectors, plus the running total of the row and the previous row; the running total
// is the only serial dependence (one per 16 columns). The last W % 16 columns (and other CPUs) run a scalar loop.
// Integer arithmetic throughout: the result is exact and independent of the thread count.
#include <cstdint>
#include <cstring>
#include <string>

#include "common/buffer.h"
#include "common/parallel.h"
#include "common/registry.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace anofast {
namespace {

// cur[x] = prev[x] + #{x' <= x : m[x'] != 0} for x < W.
inline void integral_row(const uint8_t* m, int64_t W, const int32_t* __restrict prev, int32_t* __restrict cur) {
  int32_t s = 0;  // nonzero mask bytes in columns < x
  int64_t x = 0;
#if defined(__SSE2__)
  const __m128i zero = _mm_setzero_si128(), one = _mm_set1_epi8(1);
  for (; x + 16 <= W; x += 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(m + x));
    v = _mm_andnot_si128(_mm_cmpeq_epi8(v, zero), one);  // 1 where the byte is nonzero
    v = _mm_add_epi8(v, _mm_slli_si128(v, 1));
    v = _mm_add_epi8(v, _mm_slli_si128(v, 2));
    v = _mm_add_epi8(v, _mm_slli_si128(v, 4));
    v = _mm_add_epi8(v, _mm_slli_si128(v, 8));  // byte i = count over columns x .. x + i
    const __m128i base = _mm_set1_epi32(s);
    const __m128i lo = _mm_unpacklo_epi8(v, zero), hi = _mm_unpackhi_epi8(v, zero);
    const __m128i q[4] = {_mm_unpacklo_epi16(lo, zero), _mm_unpackhi_epi16(lo, zero), _mm_unpacklo_epi16(hi, zero),
                          _mm_unpackhi_epi16(hi, zero)};
    for (int k = 0; k < 4; ++k) {
      const __m128i p = _mm_loadu_si128(reinterpret_cast<const __m128i*>(prev + x + 4 * k));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(cur + x + 4 * k), _mm_add_epi32(_mm_add_epi32(p, base), q[k]));
    }
    s += _mm_extract_epi16(v, 7) >> 8;  // byte 15: the count of all 16
  }
#endif
  for (; x < W; ++x) {
    s += m[x] != 0;
    cur[x] = prev[x] + s;
  }
}

void integral_image_cpu(const carray<uint8_t>& mask, carray<int32_t>& out, int num_threads) {
  check_shape(mask, "mask", {-1, 1, -1, -1});
  const int64_t batch = mask.shape(0), H = mask.shape(2), W = mask.shape(3);
  check_shape(out, "out", {batch, H + 1, W + 1});
  if (H * W > INT32_MAX) {
    throw py::value_error("mask: H * W = " + std::to_string(H * W) + " pixels do not fit the int32 counts");
  }
  const uint8_t* m = mask.data();
  int32_t* o = mut(out);
  py::gil_scoped_release release;
  parallel_for(batch, num_threads, [&](int64_t b) {
    const int64_t stride = W + 1;
    const uint8_t* mb = m + b * H * W;
    int32_t* ob = o + b * (H + 1) * stride;
    std::memset(ob, 0, sizeof(int32_t) * static_cast<size_t>(stride));  // row 0
    for (int64_t y = 0; y < H; ++y) {
      int32_t* row = ob + (y + 1) * stride;
      row[0] = 0;  // column 0
      integral_row(mb + y * W, W, row - stride + 1, row + 1);
    }
  });
}

void register_integral(py::module_& m) {
  m.def("integral_image_cpu", &integral_image_cpu, py::arg("mask").noconvert(), py::arg("out").noconvert(),
        py::arg("num_threads"));
}
ANOFAST_REGISTER(register_integral);

}  // namespace
}  // namespace anofast
