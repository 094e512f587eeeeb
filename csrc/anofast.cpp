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
  for (auto fn : anofast::registry()) fn(m);
}
