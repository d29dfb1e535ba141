#pragma once
// A user-written view backend: an input type that is not its own result type. user::view shares
// read-only storage; its results are user::matrix (vector_backend.hpp). Its traits are exactly
// the concept's: the tensor operations (inherited from user::matrix's backend) and the
// conversion of an input, so every public function must convert inputs at entry to compile.

#include "vector_backend.hpp"

#include <memory>
#include <vector>

namespace user {

struct view {
  brain::index rows = 0, cols = 0;
  std::shared_ptr<const std::vector<double>> data;  // row-major
};

}  // namespace user

template <>
struct brain::backend_traits<user::view> : brain::backend_traits<user::matrix> {
  static user::matrix to_tensor(const user::view& v) { return {v.rows, v.cols, *v.data}; }
};
