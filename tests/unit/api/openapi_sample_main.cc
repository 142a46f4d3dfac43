// Writes the OpenAPI document of the test ThingService (YAML, or JSON when
// the file name ends in .json), for the `npm`-labelled lint test.
#include <fstream>
#include <iostream>

#include "counterlink/api/openapi.h"

#include "api_test_support.h"
#include "cl_api_test_proto_descriptor_set.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " <out.yaml|out.json>\n";
    return 2;
  }
  using namespace counterlink::api;
  ServiceRegistry registry;
  testing::register_thing_service(registry, std::make_shared<testing::ThingServiceState>());
  // A stream of a message other methods answer too (WatchShelf's is only
  // streamed): the lint sees both forms of x-event-data-schema.
  registry.add_stream("counterlink.test.v1.ThingService.WatchThings",
                      [](CallContext&, const google::protobuf::Message&, StreamSink&) -> Outcome {
                        return std::nullopt;
                      });
  std::string path = argv[1];
  bool json = path.size() > 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  OpenApiInfo info;
  info.title = "Counterlink test API";
  std::ofstream out(path);
  out << openapi_document(registry, json ? OpenApiFormat::kJson : OpenApiFormat::kYaml, info,
                          counterlink::proto_gen::cl_api_test_proto_descriptor_set());
  return out ? 0 : 1;
}
