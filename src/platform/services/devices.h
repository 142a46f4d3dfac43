// Private to the platform services: what CreateDevice and ImportDevices
// share (placement checks, the device quota), and the import upload.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "common.h"

namespace counterlink::platform::services {

// Checks that `merchant_id` / `outlet_id` (either may be empty) exist in
// `tenant` and agree; an outlet alone sets the merchant to the outlet's.
// Field names in problems are `field_prefix` + "merchant_id" / "outlet_id".
api::Outcome resolve_placement(const Env& env, const std::string& tenant, std::string& merchant_id,
                               std::string& outlet_id);

// Device-quota checks and inserts of one process are serialized by this
// mutex so concurrent creates cannot overshoot max_devices (processes
// sharing one PostgreSQL database may still overshoot by the calls in
// flight on the other nodes).
std::mutex& device_quota_mutex();

// The tenant's max_devices (0 = unlimited) or a problem.
api::Outcome tenant_device_quota(const Env& env, const std::string& tenant, int64_t& max_devices);

// One ImportDevices call.
std::unique_ptr<api::UploadHandler> make_import_handler(EnvPtr env);

}  // namespace counterlink::platform::services
