// Must not compile: Eigen types used with brain but without brain's Eigen backend (no
// BRAIN_WITH_EIGEN, no <brain/backends/eigen.hpp>). ctest checks that the error names the header.

#include <brain/loss.hpp>

#include <Eigen/Core>

#if defined(BRAIN_CASE_samples)
brain::samples<Eigen::MatrixXd> s;
#else
Eigen::MatrixXd f(const Eigen::MatrixXd& m) { return brain::row_log_softmax(m); }
#endif
