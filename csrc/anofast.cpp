// The only module definition: anofast._C. Ops add themselves through ANOFAST_REGISTER (common/registry.h).
#include <pybind11/pybind11.h>

#include "common/parallel.h"
#include "common/registry.h"

namespace anofast {
std::vector<RegisterFn>& registry() {
  static std::vector<RegisterFn> fns;
  return fns;
}
}  // namespace anofast

PYBIND11_MODULE(_C, m) {
  m.doc() = "anofast CPU kernels (C++17, OpenMP); see anofast.ops for the public API";
  m.def("has_openmp", &anofast::has_openmp, "True if the extension was compiled with OpenMP");
#ifdef ANOFAST_BUILD_FLAGS
  m.attr("build_flags") = ANOFAST_BUILD_FLAGS;  // the compiler flags setup.py passed, e.g. "-O3 ... -fopenmp"
#else
  m.attr("build_flags") = "";
#endif
  for (auto fn : anofast::registry()) fn(m);
}
