# Compiling .proto files into C++ libraries.
#
#   counterlink_proto_library(<target>
#     PROTOS <file.proto>...          # absolute or relative to the current source dir
#     [IMPORT_DIRS <dir>...]          # proto roots, searched before the defaults
#     [DEPS <proto library>...]       # other counterlink_proto_library targets imported
#     [GRPC]                          # also run grpc_cpp_plugin (service stubs)
#     [DESCRIPTOR_SET])               # also embed a FileDescriptorSet with comments
#
# Each proto's *root* is the first import dir that contains it; the generated
# files keep the path below that root (proto/counterlink/v1/device.proto ->
# "counterlink/v1/device.pb.h"). Default import dirs, after IMPORT_DIRS:
# ${CMAKE_SOURCE_DIR}/proto, ${GOOGLEAPIS_PROTO_DIR}, protobuf's include dir;
# a proto under none of them is rooted at its own directory.
#
# The result is a static library that exposes the generated headers (as
# SYSTEM includes) and links protobuf::libprotobuf, gRPC::grpc++ with GRPC,
# cl_googleapis_proto (google.api.http) and cl_counterlink_options_proto
# (counterlink.admin_only, ...), so every generated library can import
# "google/api/annotations.proto" and "counterlink/options.proto".
#
# DESCRIPTOR_SET: protoc also writes the set of the library's files and their
# imports with source info (comments, which the generated pool drops), and the
# library gains a function returning those bytes, declared in the generated
# header "<target>_descriptor_set.h":
#   std::string_view counterlink::proto_gen::<target>_descriptor_set();
# (api::openapi_document uses it for descriptions.) Calling it also links
# every generated file of the library, so its services are in the generated
# descriptor pool even when no code names their message types.
#
# Keep generated headers out of widely included headers: include *.pb.h from
# .cc files and private headers only.
include_guard(GLOBAL)

if(NOT GOOGLEAPIS_PROTO_DIR)
  message(FATAL_ERROR "proto.cmake: GOOGLEAPIS_PROTO_DIR is not set; find_path() it before include(cmake/proto.cmake)")
endif()

if(TARGET protobuf::protoc)
  set(_cl_protoc $<TARGET_FILE:protobuf::protoc>)
elseif(Protobuf_PROTOC_EXECUTABLE)
  set(_cl_protoc ${Protobuf_PROTOC_EXECUTABLE})
else()
  find_program(_cl_protoc_path protoc REQUIRED)
  set(_cl_protoc ${_cl_protoc_path})
endif()

if(TARGET gRPC::grpc_cpp_plugin)
  set(_cl_grpc_plugin $<TARGET_FILE:gRPC::grpc_cpp_plugin>)
else()
  find_program(_cl_grpc_plugin_path grpc_cpp_plugin REQUIRED)
  set(_cl_grpc_plugin ${_cl_grpc_plugin_path})
endif()

# Where google/protobuf/descriptor.proto and the well-known types live.
set(_cl_protobuf_include "")
foreach(_dir IN LISTS Protobuf_INCLUDE_DIRS Protobuf_INCLUDE_DIR /usr/include /usr/local/include)
  if(EXISTS "${_dir}/google/protobuf/descriptor.proto")
    set(_cl_protobuf_include "${_dir}")
    break()
  endif()
endforeach()
if(NOT _cl_protobuf_include)
  message(FATAL_ERROR "proto.cmake: google/protobuf/descriptor.proto not found; install libprotobuf-dev")
endif()

set(COUNTERLINK_PROTO_ROOT "${CMAKE_SOURCE_DIR}/proto" CACHE INTERNAL "Root of the API protos")
set(_cl_bin2cc_script "${CMAKE_CURRENT_LIST_DIR}/proto_bin2cc.cmake")

function(counterlink_proto_library target)
  cmake_parse_arguments(ARG "GRPC;DESCRIPTOR_SET" "" "PROTOS;IMPORT_DIRS;DEPS" ${ARGN})
  if(NOT ARG_PROTOS)
    message(FATAL_ERROR "counterlink_proto_library(${target}): PROTOS is empty")
  endif()

  set(import_dirs "")
  foreach(dir IN LISTS ARG_IMPORT_DIRS)
    get_filename_component(dir "${dir}" ABSOLUTE)
    list(APPEND import_dirs "${dir}")
  endforeach()
  list(APPEND import_dirs "${COUNTERLINK_PROTO_ROOT}" "${GOOGLEAPIS_PROTO_DIR}" "${_cl_protobuf_include}")

  set(gen_dir "${CMAKE_BINARY_DIR}/proto_gen/${target}")
  file(MAKE_DIRECTORY "${gen_dir}")

  set(sources "")
  set(headers "")
  set(rel_protos "")
  set(extra_roots "")
  foreach(proto IN LISTS ARG_PROTOS)
    get_filename_component(proto "${proto}" ABSOLUTE)
    if(NOT EXISTS "${proto}")
      message(FATAL_ERROR "counterlink_proto_library(${target}): ${proto} does not exist")
    endif()
    set(root "")
    foreach(dir IN LISTS import_dirs)
      string(FIND "${proto}" "${dir}/" pos)
      if(pos EQUAL 0)
        set(root "${dir}")
        break()
      endif()
    endforeach()
    if(NOT root)
      get_filename_component(root "${proto}" DIRECTORY)
      list(APPEND extra_roots "${root}")
    endif()
    file(RELATIVE_PATH rel "${root}" "${proto}")
    string(REGEX REPLACE "\\.proto$" "" stem "${rel}")
    list(APPEND rel_protos "${rel}")
    list(APPEND sources "${gen_dir}/${stem}.pb.cc")
    list(APPEND headers "${gen_dir}/${stem}.pb.h")
    if(ARG_GRPC)
      list(APPEND sources "${gen_dir}/${stem}.grpc.pb.cc")
      list(APPEND headers "${gen_dir}/${stem}.grpc.pb.h")
    endif()
  endforeach()
  list(REMOVE_DUPLICATES extra_roots)
  set(all_roots ${import_dirs} ${extra_roots})

  set(include_args "")
  foreach(dir IN LISTS all_roots)
    list(APPEND include_args "-I${dir}")
  endforeach()

  set(plugin_args "")
  set(outputs ${sources} ${headers})
  if(ARG_GRPC)
    list(APPEND plugin_args "--plugin=protoc-gen-grpc=${_cl_grpc_plugin}" "--grpc_out=${gen_dir}")
  endif()
  set(descriptor_file "${gen_dir}/${target}.desc")
  if(ARG_DESCRIPTOR_SET)
    list(APPEND plugin_args "--include_imports" "--include_source_info"
         "--descriptor_set_out=${descriptor_file}")
    list(APPEND outputs "${descriptor_file}")
  endif()

  set(abs_protos "")
  foreach(proto IN LISTS ARG_PROTOS)
    get_filename_component(proto "${proto}" ABSOLUTE)
    list(APPEND abs_protos "${proto}")
  endforeach()

  add_custom_command(
    OUTPUT ${outputs}
    COMMAND ${_cl_protoc} ${include_args} "--cpp_out=${gen_dir}" ${plugin_args} ${rel_protos}
    DEPENDS ${abs_protos}
    COMMENT "protoc ${target}"
    COMMAND_EXPAND_LISTS
    VERBATIM)

  if(ARG_DESCRIPTOR_SET)
    string(MAKE_C_IDENTIFIER "${target}" cname)
    string(REPLACE ";" "|" rel_protos_bar "${rel_protos}")
    set(desc_cc "${gen_dir}/${target}_descriptor_set.cc")
    set(desc_h "${gen_dir}/${target}_descriptor_set.h")
    add_custom_command(
      OUTPUT "${desc_cc}" "${desc_h}"
      COMMAND ${CMAKE_COMMAND} -DINPUT=${descriptor_file} -DOUTPUT_CC=${desc_cc}
              -DOUTPUT_H=${desc_h} -DNAME=${cname} "-DPROTO_FILES=${rel_protos_bar}" -P ${_cl_bin2cc_script}
      DEPENDS "${descriptor_file}" "${_cl_bin2cc_script}"
      COMMENT "embed descriptor set ${target}"
      VERBATIM)
    list(APPEND sources "${desc_cc}")
  endif()

  add_library(${target} STATIC ${sources})
  # Generated code is not ours to fix; keep our warning flags meaningful.
  target_compile_options(${target} PRIVATE -w)
  target_include_directories(${target} SYSTEM PUBLIC "${gen_dir}")
  target_link_libraries(${target} PUBLIC protobuf::libprotobuf)
  if(ARG_GRPC)
    target_link_libraries(${target} PUBLIC gRPC::grpc++)
  endif()
  if(NOT target STREQUAL "cl_googleapis_proto")
    target_link_libraries(${target} PUBLIC cl_googleapis_proto)
    if(NOT target STREQUAL "cl_counterlink_options_proto")
      target_link_libraries(${target} PUBLIC cl_counterlink_options_proto)
    endif()
  endif()
  foreach(dep IN LISTS ARG_DEPS)
    target_link_libraries(${target} PUBLIC ${dep})
  endforeach()
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()

# google.api.http (annotations.proto, http.proto), compiled exactly once.
counterlink_proto_library(cl_googleapis_proto
  PROTOS "${GOOGLEAPIS_PROTO_DIR}/google/api/http.proto"
         "${GOOGLEAPIS_PROTO_DIR}/google/api/annotations.proto")

# counterlink.admin_only / idempotent_create / upload_media_types.
counterlink_proto_library(cl_counterlink_options_proto
  PROTOS "${COUNTERLINK_PROTO_ROOT}/counterlink/options.proto")
