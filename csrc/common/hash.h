// Counter-based RNG; mirrors anofast/_rng.py bit for bit (and kernels/_rng.py).
#pragma once
#include <cstdint>

namespace anofast::rng {

// lowbias32 (Chris Wellons): a 32-bit integer bijection with good avalanche.
inline uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

constexpr uint32_t kGolden = 0x9E3779B9u;

// Key of one sample from its 64-bit seed.
inline uint32_t sample_key(int64_t seed) {
  const uint64_t s = static_cast<uint64_t>(seed);
  return hash32(hash32(static_cast<uint32_t>(s)) ^ static_cast<uint32_t>(s >> 32));
}

// Key of one (sample, stream) pair: every random quantity has its own stream id.
inline uint32_t stream_key(uint32_t key, uint32_t stream) { return hash32(key ^ ((stream + 1u) * kGolden)); }

// 32 random bits for element `counter` of a stream.
inline uint32_t bits(uint32_t skey, uint32_t counter) { return hash32(hash32(counter ^ skey) + skey); }

// Uniform float in [0, 1): the top 24 bits, exactly representable in float32.
inline float uniform(uint32_t skey, uint32_t counter) {
  return static_cast<float>(bits(skey, counter) >> 8) * 5.9604644775390625e-08f;  // 2^-24
}

// Standard normal from 32 random bits: linear interpolation in the quantile table that
// anofast._rng.normal_table() builds and passes in ((1 << kNormalTableBits) + 1 floats). The top 14 bits
// pick the interval, the low 18 the position in it; the same - * + order as the reference, no FMA.
constexpr int kNormalTableBits = 14;
inline float normal(const float* table, uint32_t b) {
  const uint32_t i = b >> (32 - kNormalTableBits);
  const float f = static_cast<float>(b & ((1u << (32 - kNormalTableBits)) - 1u)) * 3.814697265625e-06f;  // 2^-18
  const float lo = table[i];
  return lo + (table[i + 1] - lo) * f;
}

}  // namespace anofast::rng
