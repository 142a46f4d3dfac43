# Transport unit tests (TCP, TLS, WebSocket). include()d from
# tests/unit/gateway/CMakeLists.txt. The transport sources are compiled into
# the test directly, so the test depends on OpenSSL only. The WebSocket framing
# is hand-written, so wslay is not needed.
find_package(OpenSSL REQUIRED)
find_package(GTest REQUIRED)
include(GoogleTest)

add_executable(transport_unit_tests
  ${CMAKE_CURRENT_LIST_DIR}/transport_test.cc
  ${CMAKE_SOURCE_DIR}/src/gateway/transport_tcp.cc
  ${CMAKE_SOURCE_DIR}/src/gateway/transport_tls.cc
  ${CMAKE_SOURCE_DIR}/src/gateway/transport_websocket.cc
)
target_include_directories(transport_unit_tests PRIVATE
  ${CMAKE_SOURCE_DIR}/src/gateway
  ${CMAKE_SOURCE_DIR}/src/gateway/include
)
target_link_libraries(transport_unit_tests PRIVATE OpenSSL::SSL OpenSSL::Crypto GTest::gtest_main)
gtest_discover_tests(transport_unit_tests)
