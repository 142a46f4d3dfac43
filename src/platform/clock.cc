#include "counterlink/platform/clock.h"

#include <chrono>

namespace counterlink::platform {

int64_t system_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace counterlink::platform
