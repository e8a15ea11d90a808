// Read an ONNX file's metadata_props (ModelProto field 14) without ONNX Runtime: a streaming scan of
// the top-level protobuf fields that seeks over the graph. Lets the runtime refuse a file that is not
// a span-deploy export (and know whether it needs the custom-op library) before creating a session.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace span {

// (key, value) pairs in file order. Throws span::Error(SPAN_ERR_IO) when the file cannot be opened
// and span::Error(SPAN_ERR_MODEL) when it is not a readable ONNX (protobuf) file.
std::vector<std::pair<std::string, std::string>> read_onnx_metadata(const std::string& path);

}  // namespace span
