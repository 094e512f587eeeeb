// mirrors anofast/reference/feature_noise.py: binding of feature_noise_cpu.
// One task = one output sample x one block of whole rows (about 4096 pixels); inside it, channel by channel, only
// the span of each row between its first and last non-zero weight is computed (the rest is copied, or left alone
// in place). Every element is computed by exactly one task, so the result does not depend on the thread count.
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "common/buffer.h"
#include "common/hash.h"
#include "common/parallel.h"
#include "common/registry.h"

// As in blend_cpu.cpp: a baseline copy of the span loop and an AVX2 copy picked at run time.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__AVX2__)
#define ANOFAST_AVX2_COPY 1
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

// Pixels [x0, x1) of one channel row: out = f + n * w where w != 0, f elsewhere; ORs "bits changed" into
// `changed` and returns nonzero if a feature read where w != 0 is NaN or infinite. With kInplace, `io` is both
// the input and the output.
template <bool kInplace>
// (Not always_inline: GCC then vectorises it separately in each copy below.)
inline uint32_t span(float* __restrict io, const float* __restrict src, const float* __restrict w,
                     uint32_t* __restrict changed, const float* __restrict table, uint32_t skey, uint32_t counter0,
                     int64_t x0, int64_t x1) {
  uint32_t bad = 0;
  // Branch-free, with the select and the tests on the bits, so that GCC vectorises the loop (hash, table gather
  // and all) at the baseline and in the AVX2 copy.
  for (int64_t x = x0; x < x1; ++x) {
    float fv;
    if constexpr (kInplace) {
      fv = io[x];
    } else {
      fv = src[x];
    }
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

using SpanFn = uint32_t (*)(float*, const float*, const float*, uint32_t*, const float*, uint32_t, uint32_t, int64_t,
                            int64_t);

template <bool kInplace>
uint32_t span_base(float* io, const float* src, const float* w, uint32_t* changed, const float* table, uint32_t skey,
                   uint32_t counter0, int64_t x0, int64_t x1) {
  return span<kInplace>(io, src, w, changed, table, skey, counter0, x0, x1);
}

#ifdef ANOFAST_AVX2_COPY
template <bool kInplace>
__attribute__((target("avx2"))) uint32_t span_avx2(float* io, const float* src, const float* w, uint32_t* changed,
                                                    const float* table, uint32_t skey, uint32_t counter0, int64_t x0,
                                                    int64_t x1) {
  return span<kInplace>(io, src, w, changed, table, skey, counter0, x0, x1);
}
#endif

template <bool kInplace>
SpanFn span_fn() {
#ifdef ANOFAST_AVX2_COPY
  // ANOFAST_NO_AVX2=1 forces the baseline copy (tests use it to check both copies on an AVX2 machine).
  const char* off = std::getenv("ANOFAST_NO_AVX2");
  if (__builtin_cpu_supports("avx2") && !(off != nullptr && off[0] == '1')) return span_avx2<kInplace>;
#endif
  return span_base<kInplace>;
}

struct Scratch {
  std::vector<float> w;
  std::vector<uint32_t> changed;
  std::vector<int64_t> ext;  // per row: first x with w != 0, last + 1 (first == last: none)
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
  if (inplace && N != B) throw py::value_error("inplace needs one output sample per input sample");
  check_shape(std_, "std", {N});
  if (weight) check_shape(*weight, "weight", {N, 1, H, W});
  check_shape(table, "table", {(1 << rng::kNormalTableBits) + 1});
  check_shape(out, "out", {N, C, H, W});
  check_shape(mask, "mask", {N, 1, H, W});
  const int64_t rows_per_block = std::max<int64_t>(1, kBlockPixels / std::max<int64_t>(W, 1));
  const int64_t n_blocks = H == 0 ? 0 : (H + rows_per_block - 1) / rows_per_block;
  check_shape(blocks, "blocks", {N, n_blocks});
  if (inplace && out.data() != features.data()) throw py::value_error("inplace: out must be the features buffer");

  const float* f = features.data();
  const int64_t* s = seeds.data();
  const float* sd = std_.data();
  const float* wt = weight ? weight->data() : nullptr;
  const float* tb = table.data();
  float* o = mut(out);
  float* m = mut(mask);
  int32_t* cnt = mut(blocks);
  const int64_t HW = H * W;
  const SpanFn fn = inplace ? span_fn<true>() : span_fn<false>();
  py::gil_scoped_release release;
  parallel_for(N * n_blocks, num_threads, [&](int64_t task) {
    static thread_local Scratch sc;
    const int64_t j = task / n_blocks, y0 = (task % n_blocks) * rows_per_block;
    const int64_t y1 = std::min(H, y0 + rows_per_block), rows = y1 - y0, npix = rows * W, p0 = y0 * W;
    sc.w.resize(npix);
    sc.changed.assign(npix, 0u);
    sc.ext.resize(2 * rows);
    float* w = sc.w.data();
    uint32_t* changed = sc.changed.data();
    for (int64_t p = 0; p < npix; ++p) w[p] = wt != nullptr ? sd[j] * wt[j * HW + p0 + p] : sd[j];
    bool any = false;
    for (int64_t r = 0; r < rows; ++r) {
      int64_t a = 0, b = W;
      while (a < W && w[r * W + a] == 0.0f) ++a;
      while (b > a && w[r * W + b - 1] == 0.0f) --b;
      sc.ext[2 * r] = a;
      sc.ext[2 * r + 1] = b;
      any |= b > a;
    }
    const float* src = f + ((j % B) * C * HW) + p0;
    float* dst = o + (j * C * HW) + p0;
    const uint32_t skey = rng::stream_key(rng::sample_key(s[j]), stream);
    uint32_t bad = 0;
    for (int64_t c = 0; c < C; ++c) {
      const float* sc_src = src + c * HW;
      float* sc_dst = dst + c * HW;
      if (!inplace) std::memcpy(sc_dst, sc_src, static_cast<size_t>(npix) * sizeof(float));
      if (!any) continue;
      const uint32_t base = static_cast<uint32_t>(c * HW + p0);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t a = sc.ext[2 * r], b = sc.ext[2 * r + 1];
        if (b <= a) continue;
        const int64_t q = r * W;
        bad |= fn(sc_dst + q, sc_src + q, w + q, changed + q, tb, skey, base + static_cast<uint32_t>(q), a, b);
      }
    }
    int32_t count = 0;
    float* mrow = m + j * HW + p0;
    for (int64_t p = 0; p < npix; ++p) {
      mrow[p] = changed[p] != 0u ? 1.0f : 0.0f;
      count += static_cast<int32_t>(changed[p] != 0u);
    }
    cnt[task] = bad != 0u ? -1 : count;
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
