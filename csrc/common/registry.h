// Each op's binding file registers itself here, so adding an op never edits a shared file.
#pragma once
#include <pybind11/pybind11.h>

#include <vector>

namespace anofast {
using RegisterFn = void (*)(pybind11::module_&);

std::vector<RegisterFn>& registry();

struct Registrar {
  explicit Registrar(RegisterFn fn) { registry().push_back(fn); }
};
}  // namespace anofast

#define ANOFAST_CONCAT_(a, b) a##b
#define ANOFAST_CONCAT(a, b) ANOFAST_CONCAT_(a, b)
// ANOFAST_REGISTER(fn): fn(py::module_&) adds this file's m.def(...) calls to anofast._C at import.
#define ANOFAST_REGISTER(fn) static ::anofast::Registrar ANOFAST_CONCAT(anofast_registrar_, __LINE__)(fn)
