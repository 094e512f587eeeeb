// Zero-copy access to numpy arrays (torch CPU tensors pass through tensor.numpy()).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace anofast {
namespace py = pybind11;

template <typename T>
using carray = py::array_t<T, py::array::c_style>;

// Checks rank and (where given, >= 0) each dimension; names the argument in the error.
template <typename T>
inline void check_shape(const carray<T>& a, const char* name, std::vector<int64_t> dims) {
  if (a.ndim() != static_cast<py::ssize_t>(dims.size())) {
    throw py::value_error(std::string(name) + ": expected rank " + std::to_string(dims.size()) + ", got " +
                          std::to_string(a.ndim()));
  }
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] >= 0 && a.shape(i) != dims[i]) {
      throw py::value_error(std::string(name) + ": dimension " + std::to_string(i) + " must be " +
                            std::to_string(dims[i]) + ", got " + std::to_string(a.shape(i)));
    }
  }
}

template <typename T>
inline T* mut(carray<T>& a) {
  return a.mutable_data();
}

}  // namespace anofast
