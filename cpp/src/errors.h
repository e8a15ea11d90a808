// Internal error type: every failure inside the runtime is a span::Error carrying the C status code
// it maps to; c_api.cpp catches it (and everything else) at the boundary.
#pragma once

#include <stdexcept>
#include <string>

#include "span_deploy/span_deploy.h"

namespace span {

class Error : public std::runtime_error {
 public:
  Error(span_status code, const std::string& message) : std::runtime_error(message), code_(code) {}
  span_status code() const noexcept { return code_; }

 private:
  span_status code_;
};

[[noreturn]] inline void fail(span_status code, const std::string& message) { throw Error(code, message); }

}  // namespace span
