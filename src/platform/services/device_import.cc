// DeviceService.ImportDevices: CSV or JSON lines, parsed as the chunks
// arrive, validated row by row, committed in batches of
// ImportOptions::batch_rows through Store::create_devices.
//
// Row errors are collected in row order: a batch holds the rejected rows
// between the valid ones, and a flush walks the batch in order, so the
// answer's `errors` are the first max_errors rejected rows of the file.
// Rows committed before a later failure stay committed (the answer lists
// them with their secrets); a database outage fails the rows of the batches
// it hits with code "unavailable" rather than the whole upload, so the
// caller never loses the secrets of rows that were stored.
#include <chrono>
#include <optional>
#include <unordered_set>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "counterlink/platform/crypto.h"
#include "counterlink/v1/devices.pb.h"

#include "devices.h"
#include "import_readers.h"

namespace counterlink::platform::services {

namespace {

using api::Outcome;

struct RowError {
  std::string field;
  std::string code;
  std::string message;
};

// One data row after parsing, before validation.
struct RowInput {
  std::string serial;
  std::string product_id;
  std::string merchant_id;
  std::string outlet_id;
  std::string firmware_version;
  std::map<std::string, std::string> labels;
  std::optional<RowError> labels_error;
  std::string secret;
};

// A row of the current batch: either rejected (error) or ready to insert.
struct Entry {
  int32_t row = 0;
  std::optional<RowError> error;
  store::Device device;
  std::string generated_secret;  // empty when the row brought its own secret
};

constexpr std::string_view kBom = "\xEF\xBB\xBF";

void trim(std::string& s) {
  size_t begin = s.find_first_not_of(" \t");
  if (begin == std::string::npos) {
    s.clear();
    return;
  }
  size_t end = s.find_last_not_of(" \t");
  s = s.substr(begin, end - begin + 1);
}

RowError from_problem(const api::Problem& p) {
  return RowError{p.field, p.code, p.detail};
}

enum class Column {
  kSerial,
  kProductId,
  kMerchantId,
  kOutletId,
  kFirmwareVersion,
  kLabels,
  kSecret
};

std::optional<Column> column_of(std::string_view name) {
  if (name == "serial") return Column::kSerial;
  if (name == "product_id") return Column::kProductId;
  if (name == "merchant_id") return Column::kMerchantId;
  if (name == "outlet_id") return Column::kOutletId;
  if (name == "firmware_version") return Column::kFirmwareVersion;
  if (name == "labels") return Column::kLabels;
  if (name == "secret") return Column::kSecret;
  return std::nullopt;
}

void set_column(RowInput& in, Column column, std::string value) {
  switch (column) {
    case Column::kSerial:
      in.serial = std::move(value);
      break;
    case Column::kProductId:
      in.product_id = std::move(value);
      break;
    case Column::kMerchantId:
      in.merchant_id = std::move(value);
      break;
    case Column::kOutletId:
      in.outlet_id = std::move(value);
      break;
    case Column::kFirmwareVersion:
      in.firmware_version = std::move(value);
      break;
    case Column::kLabels:
      if (auto p = parse_label_list("labels", value, in.labels)) in.labels_error = from_problem(*p);
      break;
    case Column::kSecret:
      in.secret = std::move(value);
      break;
  }
}

class ImportHandler : public api::UploadHandler {
 public:
  explicit ImportHandler(EnvPtr env)
      : env_(std::move(env)),
        csv_(env_->import.max_row_bytes),
        lines_(env_->import.max_row_bytes) {}

  Outcome start(api::CallContext& ctx, std::string_view content_type,
                const std::map<std::string, std::string>& params) override {
    if (content_type == "text/csv") {
      csv_mode_ = true;
    } else if (content_type == "application/x-ndjson") {
      csv_mode_ = false;
    } else {
      api::Problem p;
      p.http_status = 415;
      p.code = "unsupported_media_type";
      p.title = "Unsupported media type";
      p.detail = "Send the devices as text/csv or application/x-ndjson (Content-Type).";
      return p;
    }
    auto param = [&](const char* name) {
      auto it = params.find(name);
      return it == params.end() ? std::string() : it->second;
    };
    if (auto p = resolve_tenant(ctx, *env_, param("tenant_id"), TenantNeed::kRequired, tenant_)) {
      return p;
    }
    default_product_ = param("product_id");
    if (!default_product_.empty()) {
      if (auto p = check_id("product_id", default_product_, "pd_")) return p;
      if (!product_exists(default_product_).value_or(true)) {
        return not_found_problem("product", default_product_, "product_id");
      }
    }
    if (auto p = tenant_device_quota(*env_, tenant_, max_devices_)) return p;
    return std::nullopt;
  }

  Outcome chunk(std::string_view data) override {
    if (csv_mode_) {
      csv_.feed(data, [this](std::vector<std::string>& fields, RecordError error) {
        on_csv_record(fields, error);
      });
    } else {
      lines_.feed(data,
                  [this](std::string_view line, RecordError error) { on_json_line(line, error); });
    }
    if (header_problem_) return header_problem_;
    return std::nullopt;
  }

  Outcome finish(google::protobuf::Message& response) override {
    if (csv_mode_) {
      csv_.finish([this](std::vector<std::string>& fields, RecordError error) {
        on_csv_record(fields, error);
      });
      if (header_problem_) return header_problem_;
      if (!have_header_) {
        return api::invalid_argument(
            "data",
            "The CSV file is empty; its first line must be a header such as "
            "serial,product_id,labels.");
      }
    } else {
      lines_.finish(
          [this](std::string_view line, RecordError error) { on_json_line(line, error); });
    }
    flush();
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now() - started_)
                             .count();
    spdlog::info("device_import.done tenant={} format={} rows={} imported={} failed={} ms={}",
                 tenant_, csv_mode_ ? "csv" : "ndjson", rows_, result_.imported(), result_.failed(),
                 elapsed);
    auto& out = static_cast<v1::ImportDevicesResponse&>(response);
    out.Swap(&result_);
    out.set_errors_omitted(out.failed() - out.errors_size());
    return std::nullopt;
  }

 private:
  // ---- Parsing -------------------------------------------------------------

  void on_csv_record(std::vector<std::string>& fields, RecordError error) {
    if (header_problem_) return;
    if (!have_header_) {
      read_header(fields, error);
      return;
    }
    const int32_t row = ++rows_;
    if (error != RecordError::kNone) {
      add_rejected(row, {"", "malformed_row", record_error_text(error)});
      return;
    }
    if (fields.size() != columns_.size()) {
      add_rejected(row, {"", "malformed_row",
                         "The row has " + std::to_string(fields.size()) +
                             " fields; the header has " + std::to_string(columns_.size()) + "."});
      return;
    }
    RowInput in;
    for (size_t i = 0; i < fields.size(); ++i) {
      trim(fields[i]);
      set_column(in, columns_[i], std::move(fields[i]));
    }
    add_row(row, std::move(in));
  }

  void read_header(std::vector<std::string>& fields, RecordError error) {
    if (error != RecordError::kNone) {
      header_problem_ = api::invalid_argument(
          "data", "The CSV header line is malformed (" + record_error_text(error) + ").");
      return;
    }
    if (!fields.empty() && fields[0].starts_with(kBom)) fields[0].erase(0, kBom.size());
    bool has_serial = false, has_product = false;
    for (auto& name : fields) {
      trim(name);
      auto column = column_of(name);
      if (!column) {
        header_problem_ = api::invalid_argument(
            "data", "Unknown CSV column \"" + name.substr(0, 40) +
                        "\"; columns are serial, product_id, merchant_id, outlet_id, "
                        "firmware_version, labels, secret.");
        return;
      }
      for (Column seen : columns_) {
        if (seen == *column) {
          header_problem_ =
              api::invalid_argument("data", "CSV column \"" + name + "\" appears twice.");
          return;
        }
      }
      has_serial |= *column == Column::kSerial;
      has_product |= *column == Column::kProductId;
      columns_.push_back(*column);
    }
    if (!has_serial) {
      header_problem_ = api::invalid_argument("data", "The CSV header has no serial column.");
      return;
    }
    if (!has_product && default_product_.empty()) {
      header_problem_ = api::invalid_argument(
          "product_id",
          "The CSV header has no product_id column; add one or pass product_id as a parameter.");
      return;
    }
    have_header_ = true;
  }

  void on_json_line(std::string_view line, RecordError error) {
    const int32_t row = ++rows_;
    if (error != RecordError::kNone) {
      add_rejected(row, {"", "malformed_row", record_error_text(error)});
      return;
    }
    if (row == 1 && line.starts_with(kBom)) line.remove_prefix(kBom.size());
    auto json = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded() || !json.is_object()) {
      add_rejected(row, {"", "malformed_row", "The line is not a JSON object."});
      return;
    }
    RowInput in;
    for (auto& [name, value] : json.items()) {
      auto column = column_of(name);
      if (!column) {
        add_rejected(row, {name.substr(0, 64), "invalid_argument",
                           "Unknown field; fields are serial, product_id, merchant_id, outlet_id, "
                           "firmware_version, labels, secret."});
        return;
      }
      if (*column == Column::kLabels && value.is_object()) {
        for (auto& [key, label] : value.items()) {
          if (!label.is_string()) {
            add_rejected(row, {"labels", "invalid_argument", "Label values must be strings."});
            return;
          }
          in.labels[key] = label.get<std::string>();
        }
        if (auto p = check_labels("labels", in.labels)) in.labels_error = from_problem(*p);
        continue;
      }
      if (value.is_null()) continue;
      if (!value.is_string()) {
        add_rejected(row, {name, "invalid_argument", name + " must be a string."});
        return;
      }
      set_column(in, *column, value.get<std::string>());
    }
    add_row(row, std::move(in));
  }

  static std::string record_error_text(RecordError error) {
    switch (error) {
      case RecordError::kTooLong:
        return "The row is longer than the limit; is a quote left open?";
      case RecordError::kUnterminatedQuote:
        return "The file ends inside a quoted field; close the quote.";
      case RecordError::kStrayQuote:
        return "A character follows a closing quote; double quotes inside a quoted field (\"\").";
      case RecordError::kNone:
        break;
    }
    return "";
  }

  // ---- Validation -----------------------------------------------------------

  // nullopt: the store could not answer.
  std::optional<bool> product_exists(const std::string& id) {
    auto it = products_.find(id);
    if (it != products_.end()) return it->second;
    auto product = env_->store->get_product(tenant_, id);
    if (product.ok() || product.status().code == store::Code::kNotFound) {
      return products_[id] = product.ok();
    }
    return std::nullopt;
  }

  std::optional<RowError> validate(RowInput& in, Entry& entry) {
    if (in.product_id.empty()) in.product_id = default_product_;
    if (auto p = check_serial("serial", in.serial)) return from_problem(*p);
    if (auto p = check_id("product_id", in.product_id, "pd_")) return from_problem(*p);
    if (auto p = check_firmware_version("firmware_version", in.firmware_version)) {
      return from_problem(*p);
    }
    if (in.labels_error) return in.labels_error;
    if (!in.secret.empty()) {
      if (auto p = check_device_secret("secret", in.secret)) return from_problem(*p);
    }
    auto exists = product_exists(in.product_id);
    if (!exists) return RowError{"", "unavailable", "The database is unavailable; retry this row."};
    if (!*exists) {
      return RowError{"product_id", "product_not_found",
                      "No product with id \"" + in.product_id + "\" exists for this tenant."};
    }
    if (!in.merchant_id.empty() || !in.outlet_id.empty()) {
      std::string key = in.merchant_id + "|" + in.outlet_id;
      auto it = placements_.find(key);
      if (it == placements_.end()) {
        std::string merchant = in.merchant_id, outlet = in.outlet_id;
        auto problem = resolve_placement(*env_, tenant_, merchant, outlet);
        if (problem && problem->http_status >= 500) {
          return RowError{"", "unavailable", "The database is unavailable; retry this row."};
        }
        it = placements_.emplace(key, Placement{problem, merchant}).first;
      }
      if (it->second.problem) return from_problem(*it->second.problem);
      in.merchant_id = it->second.merchant_id;
    }
    if (!seen_.insert(in.product_id + "\n" + in.serial).second) {
      return RowError{"serial", "duplicate_serial",
                      "Serial \"" + in.serial +
                          "\" appears earlier in this file for the same "
                          "product."};
    }
    store::Device& d = entry.device;
    d.tenant_id = tenant_;
    d.product_id = std::move(in.product_id);
    d.serial = std::move(in.serial);
    d.merchant_id = std::move(in.merchant_id);
    d.outlet_id = std::move(in.outlet_id);
    d.labels = std::move(in.labels);
    d.firmware_version = std::move(in.firmware_version);
    d.created_ms = d.updated_ms = env_->now();
    d.id = new_resource_id("dv_", d.created_ms);
    if (in.secret.empty()) {
      entry.generated_secret = generate_device_secret();
      d.secret_sealed = env_->keys->seal(entry.generated_secret, d.id);
    } else {
      d.secret_sealed = env_->keys->seal(in.secret, d.id);
    }
    return std::nullopt;
  }

  // ---- Batching ---------------------------------------------------------------

  void add_row(int32_t row, RowInput in) {
    Entry entry;
    entry.row = row;
    entry.error = validate(in, entry);
    if (!entry.error) ++pending_valid_;
    batch_.push_back(std::move(entry));
    if (batch_.size() >= env_->import.batch_rows) flush();
  }

  void add_rejected(int32_t row, RowError error) {
    Entry entry;
    entry.row = row;
    entry.error = std::move(error);
    batch_.push_back(std::move(entry));
    if (batch_.size() >= env_->import.batch_rows) flush();
  }

  void flush() {
    if (batch_.empty()) return;
    std::vector<store::Device> devices;
    std::vector<size_t> index_of;  // devices[i] is batch_[index_of[i]]
    devices.reserve(pending_valid_);
    std::optional<std::vector<store::RowOutcome>> outcomes;
    {
      std::unique_lock<std::mutex> lock(device_quota_mutex(), std::defer_lock);
      int64_t allowed = INT64_MAX;
      bool counted = true;
      if (max_devices_ > 0) {
        lock.lock();
        auto count = env_->store->count_devices(tenant_);
        if (count.ok()) {
          allowed = std::max<int64_t>(0, max_devices_ - count.value());
        } else {
          counted = false;
        }
      }
      for (size_t i = 0; i < batch_.size(); ++i) {
        Entry& entry = batch_[i];
        if (entry.error) continue;
        if (!counted) {
          entry.error = RowError{"", "unavailable", "The database is unavailable; retry this row."};
          continue;
        }
        if (static_cast<int64_t>(devices.size()) >= allowed) {
          entry.error = RowError{"", "device_quota_exceeded",
                                 "The tenant reached its device quota of " +
                                     std::to_string(max_devices_) + " devices."};
          continue;
        }
        index_of.push_back(i);
        devices.push_back(std::move(entry.device));
      }
      if (!devices.empty()) {
        auto result = env_->store->create_devices(devices);
        if (result.ok()) outcomes = std::move(result).value();
      }
    }
    for (size_t k = 0; k < devices.size(); ++k) {
      Entry& entry = batch_[index_of[k]];
      const store::Device& device = devices[k];
      const store::Status* status = nullptr;
      if (outcomes && k < outcomes->size()) status = &(*outcomes)[k].status;
      if (!status) {
        entry.error = RowError{"", "unavailable", "The database is unavailable; retry this row."};
      } else if (status->code == store::Code::kConflict) {
        entry.error =
            RowError{"serial", "serial_taken",
                     "A device of this product already has serial \"" + device.serial + "\"."};
      } else if (status->code == store::Code::kInvalid) {
        entry.error =
            RowError{"product_id", "product_not_found",
                     "No product with id \"" + device.product_id + "\" exists for this tenant."};
      } else if (!status->ok()) {
        entry.error = RowError{"", "unavailable", "The database is unavailable; retry this row."};
      } else {
        auto* out = result_.add_devices();
        out->set_row(entry.row);
        out->set_id(device.id);
        out->set_serial(device.serial);
        out->set_secret(entry.generated_secret);
        result_.set_imported(result_.imported() + 1);
      }
    }
    for (Entry& entry : batch_) {
      if (!entry.error) continue;
      result_.set_failed(result_.failed() + 1);
      if (static_cast<size_t>(result_.errors_size()) < env_->import.max_errors) {
        auto* out = result_.add_errors();
        out->set_row(entry.row);
        out->set_field(entry.error->field);
        out->set_code(entry.error->code);
        out->set_message(entry.error->message);
      }
    }
    batch_.clear();
    pending_valid_ = 0;
  }

  struct Placement {
    std::optional<api::Problem> problem;
    std::string merchant_id;
  };

  EnvPtr env_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  bool csv_mode_ = true;
  std::string tenant_;
  std::string default_product_;
  int64_t max_devices_ = 0;

  CsvReader csv_;
  LineReader lines_;
  bool have_header_ = false;
  std::vector<Column> columns_;
  std::optional<api::Problem> header_problem_;
  int32_t rows_ = 0;

  std::map<std::string, bool> products_;
  std::map<std::string, Placement> placements_;
  std::unordered_set<std::string> seen_;

  std::vector<Entry> batch_;
  size_t pending_valid_ = 0;
  v1::ImportDevicesResponse result_;
};

}  // namespace

std::unique_ptr<api::UploadHandler> make_import_handler(EnvPtr env) {
  return std::make_unique<ImportHandler>(std::move(env));
}

}  // namespace counterlink::platform::services
