// Wall-clock time for the platform, injectable so tests can move time.
#pragma once

#include <cstdint>
#include <functional>

namespace counterlink::platform {

// Milliseconds since the Unix epoch, UTC (store::TimeMs).
using ClockMs = std::function<int64_t()>;

// The system clock as ClockMs. Thread-safe.
int64_t system_clock_ms();

}  // namespace counterlink::platform
