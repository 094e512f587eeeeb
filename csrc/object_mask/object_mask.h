// mirrors anofast/reference/object_mask.py (object_mask_reference): NSA's object mask, a thresholded channel sum
// then a binary median filter with replicated borders. Torch-free core, plain loops the compiler vectorises.
//
// One task is a band of output rows [y0, y1) of one image:
//   1. the binary map of the rows the band's windows reach, [y0 - r, y1 + r) clamped to the image, as 0/1 bytes:
//      the channel sum s of each pixel (uint16 while 255 C fits, else uint32), then on = AND over the table's rows
//      of (s < lo || s > hi), tested as (U)(s - lo) >= (U)(hi - lo + 1) (lo <= hi + 1, see background_table);
//   2. per output row, the column sums of the window's rows (clamped row indices; updated by one row in and one
//      out per step: the multiset of clamped rows changes by exactly those two) in the middle of a row buffer
//      whose r cells on each side repeat the edge column (replicated borders), then the horizontal sum of
//      `median` neighbours (unrolled for median <= 9, else from prefix sums) and the majority test, written as
//      1 / 0 in the output's type (float32 or uint8).
// Everything is integer arithmetic, so the result equals the reference's for any band split and thread count.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#define ANOFAST_OM_INLINE inline __attribute__((always_inline))

namespace anofast::object_mask {

struct Args {
  void* out;              // (B, 1, H, W) float32 or uint8
  const uint8_t* images;  // (B, C, H, W)
  const int32_t* table;   // (P, 2): lo, hi
  int64_t P, C, H, W;
  int64_t median;     // odd window side
  int64_t band_rows;  // output rows per task
  int64_t bands;      // tasks per image
};

// Channel sums of one row: s[x] = sum_c row[c * plane + x]. KC: the channel count at compile time (0: run time).
template <int KC, typename U>
ANOFAST_OM_INLINE void channel_sum(U* __restrict s, const uint8_t* __restrict row, int64_t C, int64_t plane,
                                   int64_t W) {
  if constexpr (KC == 1) {
    for (int64_t x = 0; x < W; ++x) s[x] = row[x];
  } else if constexpr (KC == 3) {
    const uint8_t* __restrict a = row;
    const uint8_t* __restrict b = row + plane;
    const uint8_t* __restrict c = row + 2 * plane;
    for (int64_t x = 0; x < W; ++x) s[x] = static_cast<U>(static_cast<U>(a[x]) + b[x] + c[x]);
  } else {
    for (int64_t x = 0; x < W; ++x) s[x] = row[x];
    for (int64_t ch = 1; ch < C; ++ch) {
      const uint8_t* __restrict p = row + ch * plane;
      for (int64_t x = 0; x < W; ++x) s[x] = static_cast<U>(s[x] + p[x]);
    }
  }
}

// One row of the binary map from its channel sums.
template <typename U>
ANOFAST_OM_INLINE void threshold_row(uint8_t* __restrict on, const U* __restrict s, const int32_t* table, int64_t P,
                                     int64_t W) {
  for (int64_t p = 0; p < P; ++p) {
    const U lo = static_cast<U>(table[2 * p]);
    const U width = static_cast<U>(table[2 * p + 1] - table[2 * p] + 1);  // s in [lo, hi] is off
    if (p == 0) {
      for (int64_t x = 0; x < W; ++x) on[x] = static_cast<U>(s[x] - lo) >= width;
    } else {
      for (int64_t x = 0; x < W; ++x) on[x] &= static_cast<uint8_t>(static_cast<U>(s[x] - lo) >= width);
    }
  }
}

// The window sums of K neighbours of h (h holds W + K - 1 column sums, the replicated borders included) and the
// majority test: out[x] = (h[x] + ... + h[x + K - 1] >= thr), as 1 / 0 of the output type O.
template <int K, typename O>
ANOFAST_OM_INLINE void majority_fixed(O* __restrict out, const uint16_t* __restrict h, int64_t W, uint16_t thr) {
  for (int64_t x = 0; x < W; ++x) {
    uint16_t c = h[x];
#pragma GCC unroll 16
    for (int j = 1; j < K; ++j) c = static_cast<uint16_t>(c + h[x + j]);
    out[x] = static_cast<O>(c >= thr);
  }
}

// The same for any K, from prefix sums pre[i] = h[0] + ... + h[i - 1] (pre holds W + K entries) taken modulo 2^16:
// a window's sum (at most 63 * 63) is their difference modulo 2^16, exactly.
template <typename O>
ANOFAST_OM_INLINE void majority_prefix(O* __restrict out, const uint16_t* __restrict h, uint16_t* __restrict pre,
                                       int64_t W, int64_t K, uint16_t thr) {
  uint16_t c = 0;
  for (int64_t i = 0; i < W + K - 1; ++i) pre[i] = c, c = static_cast<uint16_t>(c + h[i]);
  pre[W + K - 1] = c;
  for (int64_t x = 0; x < W; ++x) out[x] = static_cast<O>(static_cast<uint16_t>(pre[x + K] - pre[x]) >= thr);
}

// Band `task` (= b * bands + band) with channel sums of type U and KC channels (0: any), output type O.
template <int KC, typename U, typename O>
ANOFAST_OM_INLINE void band(const Args& a, int64_t task) {
  const int64_t H = a.H, W = a.W, r = a.median / 2, K = a.median;
  const int64_t b = task / a.bands, y0 = (task % a.bands) * a.band_rows;
  const int64_t y1 = std::min(H, y0 + a.band_rows);
  if (y0 >= y1) return;
  const int64_t m0 = std::max<int64_t>(0, y0 - r), m1 = std::min(H, y1 + r);  // map rows [m0, m1)
  thread_local std::vector<uint8_t> map;
  thread_local std::vector<U> sums;
  thread_local std::vector<uint16_t> hbuf;  // column sums with the replicated borders, then (K > 9) prefix sums
  if (map.size() < static_cast<size_t>((m1 - m0) * W)) map.resize(static_cast<size_t>((m1 - m0) * W));
  if (sums.size() < static_cast<size_t>(W)) sums.resize(static_cast<size_t>(W));
  if (hbuf.size() < static_cast<size_t>(2 * (W + 2 * r) + 1)) hbuf.resize(static_cast<size_t>(2 * (W + 2 * r) + 1));
  const int64_t plane = H * W;
  const uint8_t* img = a.images + b * a.C * plane;
  for (int64_t y = m0; y < m1; ++y) {
    channel_sum<KC, U>(sums.data(), img + y * W, a.C, plane, W);
    threshold_row<U>(map.data() + (y - m0) * W, sums.data(), a.table, a.P, W);
  }
  // Map row of image row y, clamped into the image (every y in [y0 - r, y1 + r] lands in [m0, m1)).
  auto row = [&](int64_t y) { return map.data() + (std::min(std::max<int64_t>(y, 0), H - 1) - m0) * W; };
  uint16_t* h = hbuf.data();
  uint16_t* col = h + r;  // the column sums; h[0, r) and h[r + W, W + 2r) repeat the edge columns
  for (int64_t x = 0; x < W; ++x) col[x] = 0;
  for (int64_t dy = -r; dy <= r; ++dy) {
    const uint8_t* __restrict m = row(y0 + dy);
    for (int64_t x = 0; x < W; ++x) col[x] = static_cast<uint16_t>(col[x] + m[x]);
  }
  const uint16_t thr = static_cast<uint16_t>((K * K + 1) / 2);
  for (int64_t y = y0; y < y1; ++y) {
    if (y > y0) {  // the window's rows move from clamp(y - 1 - r .. y - 1 + r) to clamp(y - r .. y + r)
      const uint8_t* __restrict out_row = row(y - 1 - r);
      const uint8_t* __restrict in_row = row(y + r);
      for (int64_t x = 0; x < W; ++x) col[x] = static_cast<uint16_t>(col[x] + in_row[x] - out_row[x]);
    }
    for (int64_t i = 0; i < r; ++i) h[i] = col[0], h[r + W + i] = col[W - 1];
    O* o = static_cast<O*>(a.out) + (b * H + y) * W;
    switch (K) {
      case 1: majority_fixed<1, O>(o, h, W, thr); break;
      case 3: majority_fixed<3, O>(o, h, W, thr); break;
      case 5: majority_fixed<5, O>(o, h, W, thr); break;
      case 7: majority_fixed<7, O>(o, h, W, thr); break;
      case 9: majority_fixed<9, O>(o, h, W, thr); break;
      default: majority_prefix(o, h, h + W + 2 * r, W, K, thr); break;
    }
  }
}

}  // namespace anofast::object_mask

#undef ANOFAST_OM_INLINE
