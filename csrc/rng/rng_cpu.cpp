// mirrors anofast/reference/rng.py: uniform / normal(seed[b], stream, counter) for counter in [0, n).
#include "common/buffer.h"
#include "common/hash.h"
#include "common/parallel.h"
#include "common/registry.h"
#include "common/simd.h"
#ifdef ANOFAST_X86_SIMD
#include <vector>

#include "common/normal_avx2.h"
#endif

namespace anofast {
namespace {

void rng_uniform_cpu(const carray<int64_t>& seeds, uint32_t stream, carray<float>& out, int num_threads) {
  check_shape(seeds, "seeds", {-1});
  const int64_t batch = seeds.shape(0);
  check_shape(out, "out", {batch, -1});
  const int64_t n = out.shape(1);
  const int64_t* s = seeds.data();
  float* o = mut(out);
  py::gil_scoped_release release;
  parallel_for(batch, num_threads, [&](int64_t b) {
    const uint32_t skey = rng::stream_key(rng::sample_key(s[b]), stream);
    float* row = o + b * n;
    for (int64_t i = 0; i < n; ++i) row[i] = rng::uniform(skey, static_cast<uint32_t>(i));
  });
}

#ifdef ANOFAST_X86_SIMD
// row[i] for the whole vectors of [0, n); returns where the scalar tail starts.
__attribute__((target("avx2"))) int64_t normal_row_avx2(float* row, const float* pairs, uint32_t skey, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(row + i, rng::normal_x8(pairs, skey, static_cast<uint32_t>(i)));
  return i;
}
#endif

void rng_normal_cpu(const carray<int64_t>& seeds, uint32_t stream, const carray<float>& table, carray<float>& out,
                    int num_threads) {
  check_shape(seeds, "seeds", {-1});
  check_shape(table, "table", {(1 << rng::kNormalTableBits) + 1});
  const int64_t batch = seeds.shape(0);
  check_shape(out, "out", {batch, -1});
  const int64_t n = out.shape(1);
  const int64_t* s = seeds.data();
  const float* t = table.data();
  float* o = mut(out);
#ifdef ANOFAST_X86_SIMD
  const bool avx2 = simd::use_avx2();
  const std::vector<float> pairs = avx2 ? rng::normal_pairs(t) : std::vector<float>();
#endif
  py::gil_scoped_release release;
  parallel_for(batch, num_threads, [&](int64_t b) {
    const uint32_t skey = rng::stream_key(rng::sample_key(s[b]), stream);
    float* row = o + b * n;
    int64_t i = 0;
#ifdef ANOFAST_X86_SIMD
    if (avx2) i = normal_row_avx2(row, pairs.data(), skey, n);
#endif
    for (; i < n; ++i) row[i] = rng::normal(t, rng::bits(skey, static_cast<uint32_t>(i)));
  });
}

void register_rng(py::module_& m) {
  m.def("rng_uniform_cpu", &rng_uniform_cpu, py::arg("seeds").noconvert(), py::arg("stream"),
        py::arg("out").noconvert(), py::arg("num_threads"));
  m.def("rng_normal_cpu", &rng_normal_cpu, py::arg("seeds").noconvert(), py::arg("stream"),
        py::arg("table").noconvert(), py::arg("out").noconvert(), py::arg("num_threads"));
}
ANOFAST_REGISTER(register_rng);

}  // namespace
}  // namespace anofast
