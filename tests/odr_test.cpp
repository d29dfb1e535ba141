// A second translation unit that includes the headers in another order (backend first, then the
// umbrella), to catch ODR violations and headers that depend on include order. Its function is
// called from odr_main_test.cpp.

#include <brain/backends/eigen.hpp>
#include <brain/divergence.hpp>
#include <brain/loss.hpp>

double second_translation_unit_loss(const brain::samples<Eigen::MatrixXd>& s) { return brain::brain_loss(s).loss; }
