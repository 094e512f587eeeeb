// mirrors anofast/reference/feature_noise.py: binding of feature_noise_cpu.
// One task = one input sample x one block of whole rows (about 4096 pixels), for every copy of that sample: channel
// by channel, the block's rows are read once and written to each copy, and only the runs of pixels with a non-zero
// weight are computed (the rest is copied, or left alone in place). Every element is computed by exactly one task,
// so the result does not depend on the thread count.
//
// `inplace`: the first B output samples are the features themselves (copy 0 is written in place; copies >= 1 are
// written first, from the unmodified values, channel by channel).
#include <cstdlib>
#include <new>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "common/buffer.h"
#include "common/hash.h"
#include "common/parallel.h"
#include "common/registry.h"
#include "common/simd.h"
#ifdef ANOFAST_X86_SIMD
#include "common/normal_avx2.h"
#endif

namespace anofast {
namespace {

constexpr int64_t kBlockPixels = 4096;  // mirrored by anofast/ops/feature_noise.py::_cpp_blocks
constexpr int64_t kGap = 8;  // zero-weight gaps shorter than one AVX2 vector are computed through (and kept)

inline uint32_t float_bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof(u));
  return u;
}

inline float bits_float(uint32_t u) {
  float v;
  std::memcpy(&v, &u, sizeof(v));
  return v;
}

// Pixels [x0, x1): out = f + n * w where w != 0, f elsewhere; ORs "bits changed" into `changed` and returns
// nonzero if a feature read where w != 0 is NaN or infinite. `src` may equal `io` (in place).
inline uint32_t span(float* io, const float* src, const float* w, uint32_t* changed, const float* table,
                     uint32_t skey, uint32_t counter0, int64_t x0, int64_t x1) {
  uint32_t bad = 0;
  for (int64_t x = x0; x < x1; ++x) {
    const float fv = src[x];
    const float wv = w[x];
    const float n = rng::normal(table, rng::bits(skey, counter0 + static_cast<uint32_t>(x)));
    const uint32_t fb = float_bits(fv);
    const uint32_t keep = (float_bits(wv) << 1) == 0u ? ~0u : 0u;  // w == +-0: the feature stays as it is
    const uint32_t ob = (float_bits(fv + n * wv) & ~keep) | (fb & keep);
    io[x] = bits_float(ob);
    changed[x] |= ob != fb ? 1u : 0u;
    bad |= ~keep & ((fb & 0x7f800000u) == 0x7f800000u ? 1u : 0u);  // NaN or +-inf where noise is added
  }
  return bad;
}

#ifdef ANOFAST_X86_SIMD
// The same as span, 8 pixels at a time with AVX2 (rng::normal_x8). The last vector of a segment is a whole one
// whose lanes at or beyond x1 keep the value they read (masked stores are slow on some CPUs): that is exact as
// long as it stays below `xmax` (the end of the task's pixels), because pixels beyond x1 are either never
// computed or computed later, from `src`; a vector that would cross xmax is left to span.
__attribute__((target("avx2"))) uint32_t span_avx2(float* io, const float* src, const float* w, uint32_t* changed,
                                                    const float* table, const float* pairs, uint32_t skey,
                                                    uint32_t counter0, int64_t x0, int64_t x1, int64_t xmax) {
  const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi32(1);
  const __m256i expo = _mm256_set1_epi32(0x7f800000), lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i bad = zero;
  int64_t x = x0;
  for (; x < x1 && x + 8 <= xmax; x += 8) {
    const __m256 fv = _mm256_loadu_ps(src + x);
    const __m256 wv = _mm256_loadu_ps(w + x);
    const __m256 n = rng::normal_x8(pairs, skey, counter0 + static_cast<uint32_t>(x));
    const __m256i fb = _mm256_castps_si256(fv);
    const __m256i beyond = _mm256_cmpgt_epi32(lane, _mm256_set1_epi32(static_cast<int>(x1 - x - 1)));
    const __m256i keep = _mm256_or_si256(_mm256_cmpeq_epi32(_mm256_slli_epi32(_mm256_castps_si256(wv), 1), zero),
                                         beyond);
    const __m256i ob = _mm256_blendv_epi8(_mm256_castps_si256(_mm256_add_ps(fv, _mm256_mul_ps(n, wv))), fb, keep);
    _mm256_storeu_ps(io + x, _mm256_castsi256_ps(ob));
    auto* ch = reinterpret_cast<__m256i*>(changed + x);
    _mm256_storeu_si256(ch, _mm256_or_si256(_mm256_loadu_si256(ch),
                                            _mm256_andnot_si256(_mm256_cmpeq_epi32(ob, fb), one)));
    bad = _mm256_or_si256(bad, _mm256_andnot_si256(keep, _mm256_cmpeq_epi32(_mm256_and_si256(fb, expo), expo)));
  }
  uint32_t out = _mm256_testz_si256(bad, bad) ? 0u : 1u;
  if (x < x1) out |= span(io, src, w, changed, table, skey, counter0, x, x1);
  return out;
}
#endif

#ifdef ANOFAST_X86_SIMD
// Whether `dst` can take streaming stores of whole vectors: 32-byte aligned, a whole number of vectors.
inline bool stream_ok(const float* dst, int64_t n) {
  return (reinterpret_cast<uintptr_t>(dst) & 31u) == 0 && n % 8 == 0;
}

__attribute__((target("avx2"))) void stream_copy(float* dst, const float* src, int64_t n) {
  for (int64_t x = 0; x < n; x += 8) _mm256_stream_ps(dst + x, _mm256_load_ps(src + x));
}
#endif

// std::allocator with 32-byte alignment (the scratch row is read with aligned vector loads).
template <typename T>
struct AlignedAlloc {
  using value_type = T;
  AlignedAlloc() = default;
  template <typename U>
  AlignedAlloc(const AlignedAlloc<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(32))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(32)); }
  bool operator==(const AlignedAlloc&) const { return true; }
  bool operator!=(const AlignedAlloc&) const { return false; }
};

struct Copy {  // one output copy of the task's block
  std::vector<float> w;
  std::vector<uint32_t> changed;
  // [a0, b0, a1, b1, ...): the runs of pixels with w != 0, merged across gaps of fewer than kGap pixels (a
  // segment may hold zero weights: the span functions leave those pixels as they are)
  std::vector<int64_t> runs;
  uint32_t skey = 0;
  uint32_t bad = 0;  // a NaN / infinite feature got noise in this copy
};

void feature_noise_cpu(const carray<float>& features, const carray<int64_t>& seeds, const carray<float>& std_,
                       const std::optional<carray<float>>& weight, const carray<float>& table, uint32_t stream,
                       bool inplace, carray<float>& out, carray<float>& mask, carray<int32_t>& blocks,
                       int num_threads) {
  check_shape(features, "features", {-1, -1, -1, -1});
  const int64_t B = features.shape(0), C = features.shape(1), H = features.shape(2), W = features.shape(3);
  check_shape(seeds, "seeds", {-1});
  const int64_t N = seeds.shape(0);
  if (B == 0 ? N != 0 : N % B != 0) throw py::value_error("seeds: length must be a multiple of the batch size");
  const int64_t copies = B == 0 ? 0 : N / B;
  check_shape(std_, "std", {N});
  if (weight) check_shape(*weight, "weight", {N, 1, H, W});
  check_shape(table, "table", {(1 << rng::kNormalTableBits) + 1});
  check_shape(out, "out", {N, C, H, W});
  check_shape(mask, "mask", {N, 1, H, W});
  const int64_t rows_per_block = std::max<int64_t>(1, kBlockPixels / std::max<int64_t>(W, 1));
  const int64_t n_blocks = H == 0 ? 0 : (H + rows_per_block - 1) / rows_per_block;
  check_shape(blocks, "blocks", {N, n_blocks});
  if (inplace && out.data() != features.data()) throw py::value_error("inplace: out must start with the features");

  const float* f = features.data();
  const int64_t* s = seeds.data();
  const float* sd = std_.data();
  const float* wt = weight ? weight->data() : nullptr;
  const float* tb = table.data();
  float* o = mut(out);
  float* m = mut(mask);
  int32_t* cnt = mut(blocks);
  const int64_t HW = H * W;
#ifdef ANOFAST_X86_SIMD
  const bool avx2 = simd::use_avx2();
  const std::vector<float> pairs = avx2 ? rng::normal_pairs(tb) : std::vector<float>();
#endif
  py::gil_scoped_release release;
  parallel_for(B * n_blocks, num_threads, [&](int64_t task) {
    static thread_local std::vector<Copy> cps;
    static thread_local std::vector<float, AlignedAlloc<float>> row;
    const int64_t b = task / n_blocks, y0 = (task % n_blocks) * rows_per_block;
    const int64_t y1 = std::min(H, y0 + rows_per_block), npix = (y1 - y0) * W, p0 = y0 * W;
    cps.resize(static_cast<size_t>(copies));
    row.resize(static_cast<size_t>(npix));
    for (int64_t k = 0; k < copies; ++k) {
      Copy& cp = cps[k];
      const int64_t j = k * B + b;
      cp.w.resize(npix);
      cp.changed.assign(npix, 0u);
      cp.runs.clear();
      float* w = cp.w.data();
      for (int64_t p = 0; p < npix; ++p) w[p] = wt != nullptr ? sd[j] * wt[j * HW + p0 + p] : sd[j];
      for (int64_t p = 0; p < npix;) {
        while (p < npix && w[p] == 0.0f) ++p;
        const int64_t a = p;
        while (p < npix && w[p] != 0.0f) ++p;
        if (p > a) {
          if (!cp.runs.empty() && a - cp.runs.back() < kGap) {
            cp.runs.back() = p;
          } else {
            cp.runs.push_back(a);
            cp.runs.push_back(p);
          }
        }
      }
      cp.skey = rng::stream_key(rng::sample_key(s[j]), stream);
      cp.bad = 0;
    }
    for (int64_t c = 0; c < C; ++c) {
      const float* src = f + (b * C + c) * HW + p0;
      const uint32_t base = static_cast<uint32_t>(c * HW + p0);
      for (int64_t k = copies - 1; k >= 0; --k) {  // copy 0 last: in place it overwrites `src`
        Copy& cp = cps[k];
        float* dst = o + ((k * B + b) * C + c) * HW + p0;
        const bool in_place = inplace && k == 0;
#ifdef ANOFAST_X86_SIMD
        // A new copy is assembled in the (cache-resident) scratch row and streamed out with non-temporal
        // stores: the output lines are not read first (the copy is ~1/3 less memory traffic).
        if (avx2 && !in_place && stream_ok(dst, npix)) {
          std::memcpy(row.data(), src, static_cast<size_t>(npix) * sizeof(float));
          for (size_t r = 0; r < cp.runs.size(); r += 2) {
            cp.bad |= span_avx2(row.data(), src, cp.w.data(), cp.changed.data(), tb, pairs.data(), cp.skey, base,
                                cp.runs[r], cp.runs[r + 1], npix);
          }
          stream_copy(dst, row.data(), npix);
          continue;
        }
#endif
        if (!in_place) std::memcpy(dst, src, static_cast<size_t>(npix) * sizeof(float));
        for (size_t r = 0; r < cp.runs.size(); r += 2) {
          const int64_t a = cp.runs[r], e = cp.runs[r + 1];
#ifdef ANOFAST_X86_SIMD
          if (avx2) {
            cp.bad |= span_avx2(dst, src, cp.w.data(), cp.changed.data(), tb, pairs.data(), cp.skey, base, a, e, npix);
            continue;
          }
#endif
          cp.bad |= span(dst, src, cp.w.data(), cp.changed.data(), tb, cp.skey, base, a, e);
        }
      }
    }
#ifdef ANOFAST_X86_SIMD
    if (avx2) _mm_sfence();  // the streamed stores are visible before the task ends
#endif
    for (int64_t k = 0; k < copies; ++k) {
      const int64_t j = k * B + b;
      const uint32_t* changed = cps[k].changed.data();
      int32_t count = 0;
      float* mrow = m + j * HW + p0;
      for (int64_t p = 0; p < npix; ++p) {
        mrow[p] = changed[p] != 0u ? 1.0f : 0.0f;
        count += static_cast<int32_t>(changed[p] != 0u);
      }
      cnt[j * n_blocks + task % n_blocks] = cps[k].bad != 0u ? -1 : count;
    }
  });
}

void register_feature_noise(py::module_& m) {
  m.def("feature_noise_cpu", &feature_noise_cpu, py::arg("features").noconvert(), py::arg("seeds").noconvert(),
        py::arg("std").noconvert(), py::arg("weight").noconvert(), py::arg("table").noconvert(), py::arg("stream"),
        py::arg("inplace"), py::arg("out").noconvert(), py::arg("mask").noconvert(), py::arg("blocks").noconvert(),
        py::arg("num_threads"));
}
ANOFAST_REGISTER(register_feature_noise);

}  // namespace
}  // namespace anofast
