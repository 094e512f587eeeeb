// mirrors anofast/reference/feature_noise.py: binding of feature_noise_cpu.
// One task = one input sample x one block of whole rows (about 4096 pixels), for every copy of that sample: channel
// by channel, the block's rows are read once and written to each copy, and only the pixels with a non-zero weight
// (listed once per task) are computed (the rest is copied, or left alone in place). Every element is computed by
// exactly one task, so the result does not depend on the thread count.
//
// `inplace`: the first B output samples are the features themselves (copy 0 is written in place; copies >= 1 are
// written first, from the unmodified values, channel by channel).
#include <cstring>
#include <optional>
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

// The noisy pixels of one channel of one copy: io[pos[i]] = src[pos[i]] + n * wc[i] for i < npos (every wc[i]
// is non-zero), n the normal of counter base + pos[i]; ORs "bits changed" into chc[i] and returns nonzero if a
// feature read is NaN or infinite. `src` may equal `io` (in place).
uint32_t noise_at(float* io, const float* src, const int32_t* pos, const float* wc, uint32_t* chc, int64_t npos,
                  const float* table, uint32_t skey, uint32_t base) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < npos; ++i) {
    const int32_t p = pos[i];
    const float fv = src[p];
    const float n = rng::normal(table, rng::bits(skey, base + static_cast<uint32_t>(p)));
    const uint32_t fb = float_bits(fv), ob = float_bits(fv + n * wc[i]);
    io[p] = bits_float(ob);
    chc[i] |= ob != fb ? 1u : 0u;
    bad |= (fb & 0x7f800000u) == 0x7f800000u ? 1u : 0u;  // NaN or +-inf where noise is added
  }
  return bad;
}

#ifdef ANOFAST_X86_SIMD
// noise_at, 8 positions at a time with AVX2 (rng::normal_x8_at): a gather when the 8 positions are not
// consecutive, else plain loads and stores. `pos`, `wc` and `chc` are padded to a multiple of 8 (pos with a
// valid position); padding lanes are computed but neither stored nor counted.
__attribute__((target("avx2"))) uint32_t noise_at_avx2(float* io, const float* src, const int32_t* pos,
                                                        const float* wc, uint32_t* chc, int64_t npos,
                                                        const float* pairs, uint32_t skey, uint32_t base) {
  const __m256i one = _mm256_set1_epi32(1), expo = _mm256_set1_epi32(0x7f800000);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), vbase = _mm256_set1_epi32(static_cast<int>(base));
  __m256i bad = _mm256_setzero_si256();
  alignas(32) float res[8];
  for (int64_t i = 0; i < npos; i += 8) {
    const int64_t nv = npos - i < 8 ? npos - i : 8;
    const __m256i valid = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(nv)), lane);
    const __m256i pv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pos + i));
    const int32_t p0 = pos[i];
    const bool run = nv == 8 && _mm256_movemask_epi8(_mm256_cmpeq_epi32(
                                    pv, _mm256_add_epi32(_mm256_set1_epi32(p0), lane))) == -1;
    const __m256 fv = run ? _mm256_loadu_ps(src + p0) : _mm256_i32gather_ps(src, pv, 4);
    const __m256 n = rng::normal_x8_at(pairs, skey, _mm256_add_epi32(vbase, pv));
    const __m256 ov = _mm256_add_ps(fv, _mm256_mul_ps(n, _mm256_loadu_ps(wc + i)));
    const __m256i fb = _mm256_castps_si256(fv), ob = _mm256_castps_si256(ov);
    auto* ch = reinterpret_cast<__m256i*>(chc + i);
    _mm256_storeu_si256(ch, _mm256_or_si256(_mm256_loadu_si256(ch),
                                            _mm256_and_si256(valid, _mm256_andnot_si256(_mm256_cmpeq_epi32(ob, fb), one))));
    bad = _mm256_or_si256(bad, _mm256_and_si256(valid, _mm256_cmpeq_epi32(_mm256_and_si256(fb, expo), expo)));
    if (run) {
      _mm256_storeu_ps(io + p0, ov);
    } else {
      _mm256_store_ps(res, ov);
      for (int64_t l = 0; l < nv; ++l) io[pos[i + l]] = res[l];
    }
  }
  return _mm256_testz_si256(bad, bad) ? 0u : 1u;
}

// Whether `dst` can take streaming stores of whole vectors: 32-byte aligned, a whole number of vectors.
inline bool stream_ok(const float* dst, int64_t n) {
  return (reinterpret_cast<uintptr_t>(dst) & 31u) == 0 && n % 8 == 0;
}

__attribute__((target("avx2"))) void stream_copy(float* dst, const float* src, int64_t n) {
  for (int64_t x = 0; x < n; x += 8) _mm256_stream_ps(dst + x, _mm256_loadu_ps(src + x));
}
#endif

struct Copy {  // one output copy of the task's block
  std::vector<int32_t> pos;  // pixels (in the block) with a non-zero weight, ascending; padded to a multiple of 8
  std::vector<float> wc;     // their weights (padding: 0)
  std::vector<uint32_t> chc;  // whether any channel's bits changed there
  int64_t npos = 0;
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
    static thread_local std::vector<float> row;  // a new copy's block row, before it is streamed out
    const int64_t b = task / n_blocks, y0 = (task % n_blocks) * rows_per_block;
    const int64_t y1 = std::min(H, y0 + rows_per_block), npix = (y1 - y0) * W, p0 = y0 * W;
    cps.resize(static_cast<size_t>(copies));
    row.resize(static_cast<size_t>(npix));
    for (int64_t k = 0; k < copies; ++k) {
      Copy& cp = cps[k];
      const int64_t j = k * B + b;
      cp.pos.clear();
      cp.wc.clear();
      for (int64_t p = 0; p < npix; ++p) {
        const float wv = wt != nullptr ? sd[j] * wt[j * HW + p0 + p] : sd[j];
        if (wv != 0.0f) {
          cp.pos.push_back(static_cast<int32_t>(p));
          cp.wc.push_back(wv);
        }
      }
      cp.npos = static_cast<int64_t>(cp.pos.size());
      while (cp.pos.size() % 8 != 0) {
        cp.pos.push_back(cp.pos.back());
        cp.wc.push_back(0.0f);
      }
      cp.chc.assign(cp.pos.size(), 0u);
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
        if (avx2) {
          // A new copy is assembled in the (cache-resident) scratch row and streamed out with non-temporal
          // stores: the output lines are not read first (the copy is ~1/3 less memory traffic).
          const bool stream = !in_place && stream_ok(dst, npix);
          float* io = in_place ? dst : (stream ? row.data() : dst);
          if (!in_place) std::memcpy(io, src, static_cast<size_t>(npix) * sizeof(float));
          cp.bad |= noise_at_avx2(io, src, cp.pos.data(), cp.wc.data(), cp.chc.data(), cp.npos, pairs.data(),
                                  cp.skey, base);
          if (stream) stream_copy(dst, row.data(), npix);
          continue;
        }
#endif
        if (!in_place) std::memcpy(dst, src, static_cast<size_t>(npix) * sizeof(float));
        cp.bad |= noise_at(dst, src, cp.pos.data(), cp.wc.data(), cp.chc.data(), cp.npos, tb, cp.skey, base);
      }
    }
#ifdef ANOFAST_X86_SIMD
    if (avx2) _mm_sfence();  // the streamed stores are visible before the task ends
#endif
    for (int64_t k = 0; k < copies; ++k) {
      const Copy& cp = cps[k];
      const int64_t j = k * B + b;
      float* mrow = m + j * HW + p0;
      std::memset(mrow, 0, static_cast<size_t>(npix) * sizeof(float));
      int32_t count = 0;
      for (int64_t i = 0; i < cp.npos; ++i) {
        if (cp.chc[i] != 0u) {
          mrow[cp.pos[i]] = 1.0f;
          ++count;
        }
      }
      cnt[j * n_blocks + task % n_blocks] = cp.bad != 0u ? -1 : count;
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
