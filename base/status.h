// Status and StatusOr<T>: the error currency of every library layer.
//
// Library code never throws across a layer boundary and never exits; it returns a Status (or a
// StatusOr<T> carrying either a value or an error). Third-party errors are converted into a Status
// once, at the boundary where they appear. Broken invariants (programming errors) use GRPO_CHECK.
#pragma once

#include <cstdlib>
#include <optional>
#include <ostream>
#include <string>
#include <utility>

namespace grpo {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kFailedPrecondition,
  kOutOfRange,
  kUnavailable,
  kDeadlineExceeded,
  kDataLoss,
  kCancelled,
  kInternal,
  kUnimplemented,
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "INVALID_ARGUMENT: message", or "OK".
  std::string to_string() const;

  // Returns a copy whose message is prefixed by `context: `.
  Status with_context(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline std::ostream& operator<<(std::ostream& os, const Status& s) { return os << s.to_string(); }

inline Status ok_status() { return Status(); }
inline Status invalid_argument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status not_found(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status already_exists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
inline Status failed_precondition(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status out_of_range(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
inline Status unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status deadline_exceeded(std::string m) {
  return {StatusCode::kDeadlineExceeded, std::move(m)};
}
inline Status data_loss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
inline Status internal_error(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }

// Holds either a T or a non-OK Status. Accessing the value of an error is a GRPO_CHECK failure.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(const Status& status) : status_(status) { check_not_ok(); }  // NOLINT
  StatusOr(Status&& status) : status_(std::move(status)) { check_not_ok(); }  // NOLINT
  StatusOr(const T& value) : value_(value) {}  // NOLINT
  StatusOr(T&& value) : value_(std::move(value)) {}  // NOLINT

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }

  T& value() & { check_ok(); return *value_; }
  const T& value() const& { check_ok(); return *value_; }
  T&& value() && { check_ok(); return std::move(*value_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  void check_ok() const;
  void check_not_ok() const;

  Status status_;
  std::optional<T> value_;
};

[[noreturn]] void check_failed(const char* file, int line, const char* expr, const std::string& msg);

template <typename T>
void StatusOr<T>::check_ok() const {
  if (!status_.ok()) check_failed(__FILE__, __LINE__, "StatusOr::value()", status_.to_string());
}
template <typename T>
void StatusOr<T>::check_not_ok() const {
  if (status_.ok()) check_failed(__FILE__, __LINE__, "StatusOr(Status)", "OK status without value");
}

}  // namespace grpo

#define GRPO_CHECK(cond)                                          \
  do {                                                            \
    if (!(cond)) ::grpo::check_failed(__FILE__, __LINE__, #cond, ""); \
  } while (0)

#define GRPO_CHECK_MSG(cond, msg)                                    \
  do {                                                               \
    if (!(cond)) ::grpo::check_failed(__FILE__, __LINE__, #cond, (msg)); \
  } while (0)

#define GRPO_CONCAT_INNER(a, b) a##b
#define GRPO_CONCAT(a, b) GRPO_CONCAT_INNER(a, b)

// Returns early with the status when `expr` is not OK.
#define GRPO_RETURN_IF_ERROR(expr)             \
  do {                                         \
    ::grpo::Status grpo_status_ = (expr);      \
    if (!grpo_status_.ok()) return grpo_status_; \
  } while (0)

// `GRPO_ASSIGN_OR_RETURN(auto x, f());` declares x from a StatusOr or returns its error.
#define GRPO_ASSIGN_OR_RETURN(lhs, expr) \
  GRPO_ASSIGN_OR_RETURN_IMPL(GRPO_CONCAT(grpo_statusor_, __LINE__), lhs, expr)
#define GRPO_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()
