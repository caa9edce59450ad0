#pragma once
// Parsing and validation of the node's YAML configuration.
// Called from cmd/ at startup and on SIGHUP (control thread). Pure: no I/O beyond
// load_file, which only reads the file.

#include "config/types.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace routemesh::config {

// Either a fully validated config with defaults filled, or every error found.
using ParseResult = std::variant<NodeConfig, std::vector<FieldError>>;

// Parses YAML text. Unknown keys are errors (a typo must not silently fall back to a default).
// Validates node settings and the syntax of services (names, ports, task addresses) with the
// shared grammar of base/address.h and base/port_mapping.h; label semantics are checked by
// discovery::validate_state (one validator shared with the store).
ParseResult parse(std::string_view yaml_text);

// Reads and parses a file; a read failure is reported as an error with path "".
ParseResult load_file(const std::string& path);

// The keys whose new value in `next` takes effect only after a restart (the listeners' address
// and port, the admin address, the number of proxy threads, the node's name), in a fixed
// order; empty when a reload can apply everything. Everything else (timeouts, limits, health,
// via, trusted_proxies, the access log, services) applies on reload.
std::vector<std::string> restart_required(const NodeConfig& current, const NodeConfig& next);

// Formats errors one per line: "path: message" (just "message" when path is empty).
std::string format_errors(const std::vector<FieldError>& errors);

}  // namespace routemesh::config
