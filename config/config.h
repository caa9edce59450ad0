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
// Validates node settings and the syntax of services (names, ports, task addresses); label
// semantics are checked by discovery::validate_state (one validator shared with the store).
ParseResult parse(std::string_view yaml_text);

// Reads and parses a file; a read failure is reported as an error with path "".
ParseResult load_file(const std::string& path);

// "published:target/tcp" or "published:target" -> PortMapping; false if malformed.
bool parse_port_mapping(std::string_view text, PortMapping& out);

// True for an IPv4 or IPv6 literal (no brackets, no port), e.g. "127.0.0.1", "::1".
bool is_ip_literal(std::string_view text);

// A task address from the config file: "IP:PORT", "IP", "[IPv6]:PORT", "[IPv6]" or a bare
// IPv6 literal. Port 0 in `port` means "no port given"; an explicit port must be 1..65535.
// Shared with discovery::state_from_config so both accept exactly the same strings.
bool parse_task_address(std::string_view text, std::string& address, std::uint16_t& port);

// "IP:PORT" with an IPv4 literal or "[IPv6]:PORT", port 1..65535 (addresses we bind or dial,
// never host names).
bool is_ip_port(std::string_view text);

// IPv4 CIDR "a.b.c.d/len" with no host bits set. On success `network` holds the address in
// host byte order and `prefix` the length (0..32). Shared with discovery's IPAM.
bool parse_ipv4_cidr(std::string_view text, std::uint32_t& network, unsigned& prefix);

// Object names (services, networks): [a-z0-9][a-z0-9_.-]{0,62}. Shared with the store's
// validator so the file and the API accept the same names.
bool is_valid_name(std::string_view name);

// RFC 1123 §2.1 host names (letters, digits, '-', labels of 1..63 octets, at most 253 in all),
// plus '_' which internal names use in practice. Case is not checked.
bool is_valid_hostname(std::string_view host);

// Formats errors one per line: "path: message" (just "message" when path is empty).
std::string format_errors(const std::vector<FieldError>& errors);

}  // namespace routemesh::config
