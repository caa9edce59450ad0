#pragma once
// Parsing and validation of the node's YAML configuration.
// Called from cmd/ at startup and on SIGHUP (control thread). Pure: no I/O beyond
// load_file, which only reads the file.

#include "config/types.h"

#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace routemesh::config {

// Either a fully validated config with defaults filled, or every error found.
using ParseResult = std::variant<NodeConfig, std::vector<FieldError>>;

// Parses YAML text. Unknown keys are errors (a typo must not silently fall back to a default).
// Validates node settings and the syntax of services (names, ports, task addresses); label
// semantics are checked by discovery::validate_state (one validator shared with the store).
ParseResult parse(std::string_view yaml_text);

// Reads and parses a file; a read failure is reported as an error with path "".
ParseResult load_file(const std::string& path);

// "published:target/tcp" or "published:target" -> PortMapping; false if malformed.
bool parse_port_mapping(std::string_view text, PortMapping& out);

// Formats errors one per line: "path: message".
std::string format_errors(const std::vector<FieldError>& errors);

}  // namespace routemesh::config
