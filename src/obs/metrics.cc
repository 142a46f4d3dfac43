#include "counterlink/obs/metrics.h"

#include <map>

namespace counterlink::obs {
namespace {
thread_local unsigned t_shard = 0;

std::string render_labels(const Labels& labels) {
  if (labels.empty()) return {};
  std::string out = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i) out += ',';
    out += labels[i].first;
    out += "=\"";
    for (char c : labels[i].second) {
      if (c == '\\' || c == '"') out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}
}  // namespace

void set_thread_shard(unsigned index) {
  t_shard = index % kMetricShards;
}
unsigned thread_shard() {
  return t_shard;
}

uint64_t Counter::value() const {
  uint64_t sum = 0;
  for (const auto& s : shards_)
    sum += s.value.load(std::memory_order_relaxed);
  return sum;
}

int64_t Gauge::value() const {
  int64_t sum = 0;
  for (const auto& s : shards_)
    sum += s.value.load(std::memory_order_relaxed);
  return sum;
}

Counter& Registry::counter(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mutex_);
  for (auto& e : entries_) {
    if (e->name == name && e->labels == labels && e->is_counter) return *e->counter;
  }
  auto e = std::make_unique<Entry>();
  e->name = name;
  e->help = help;
  e->labels = labels;
  e->is_counter = true;
  e->counter = std::make_unique<Counter>();
  auto& ref = *e->counter;
  entries_.push_back(std::move(e));
  return ref;
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mutex_);
  for (auto& e : entries_) {
    if (e->name == name && e->labels == labels && !e->is_counter) return *e->gauge;
  }
  auto e = std::make_unique<Entry>();
  e->name = name;
  e->help = help;
  e->labels = labels;
  e->is_counter = false;
  e->gauge = std::make_unique<Gauge>();
  auto& ref = *e->gauge;
  entries_.push_back(std::move(e));
  return ref;
}

std::string Registry::render() const {
  std::lock_guard lock(mutex_);
  // Group samples by family name so HELP/TYPE appear once per family.
  std::map<std::string, std::vector<const Entry*>> families;
  for (const auto& e : entries_)
    families[e->name].push_back(e.get());
  std::string out;
  for (const auto& [name, list] : families) {
    out += "# HELP " + name + " " + list.front()->help + "\n";
    out += "# TYPE " + name + (list.front()->is_counter ? " counter\n" : " gauge\n");
    for (const Entry* e : list) {
      out += name + render_labels(e->labels) + " ";
      out +=
          e->is_counter ? std::to_string(e->counter->value()) : std::to_string(e->gauge->value());
      out += "\n";
    }
  }
  return out;
}

int64_t Registry::value(const std::string& name, const Labels& labels) const {
  std::lock_guard lock(mutex_);
  for (const auto& e : entries_) {
    if (e->name == name && e->labels == labels) {
      return e->is_counter ? static_cast<int64_t>(e->counter->value()) : e->gauge->value();
    }
  }
  return 0;
}

Registry& metrics() {
  static Registry* registry = new Registry();  // never destroyed: used until exit
  return *registry;
}

}  // namespace counterlink::obs
