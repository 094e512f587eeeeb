// Thread fan-out for the CPU kernels: the thread count is passed in on every call
// (torch.get_num_threads(), 1 inside DataLoader workers). Each output element is written by exactly
// one thread, so results do not depend on the thread count.
#pragma once
#include <algorithm>
#include <cstdint>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace anofast {

inline bool has_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

// Calls fn(i) for i in [0, n). With one thread it runs a plain loop and never touches the OpenMP
// runtime, which keeps forked DataLoader workers safe (libgomp's pool does not survive fork()).
// Chunks are handed out dynamically (about 8 per thread): on a shared machine a thread that loses its core
// for a time slice no longer holds back a fixed half of the work. Which thread computes an item never
// changes its value, so the output is the same for any schedule.
template <typename F>
inline void parallel_for(int64_t n, int num_threads, F&& fn) {
#ifdef _OPENMP
  if (num_threads > 1 && n > 1) {
    const int64_t chunk = std::max<int64_t>(1, n / (8 * static_cast<int64_t>(num_threads)));
#pragma omp parallel for num_threads(num_threads) schedule(dynamic, chunk)
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
#endif
  for (int64_t i = 0; i < n; ++i) fn(i);
}

}  // namespace anofast
