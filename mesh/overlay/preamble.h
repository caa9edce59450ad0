#pragma once
// The overlay's stream preamble: the first line a node sends on an overlay connection, naming
// the task the stream is for and the client it carries. Pure (no I/O).
//
//   RMOV1 <proto> <task id> <task port> <client ip> <client port> <dst ip> <dst port>\n
//
// proto is `http`, `tcp` or `udp`; ips are IPv4 or IPv6 literals without brackets; `dst` is the
// address and port the client connected to on the first node (what a PROXY protocol header
// reports as the destination). The receiving node answers with one byte (Reply) and, on
// kConnected, the connection carries the stream's bytes both ways from then on.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace routemesh::mesh::overlay {

// udp: datagrams of one flow, each framed on the stream as a 2-byte big-endian length and
// the payload (kMaxDatagram at most), both ways.
enum class StreamProtocol { http, tcp, udp };

inline constexpr std::size_t kMaxDatagram = 65'507;

struct Preamble {
  StreamProtocol protocol = StreamProtocol::tcp;
  std::string task_id;
  std::uint16_t task_port = 0;
  std::string client_ip;
  std::uint16_t client_port = 0;
  std::string dst_ip;
  std::uint16_t dst_port = 0;
  bool operator==(const Preamble&) const = default;
};

// The longest preamble line accepted, newline included.
inline constexpr std::size_t kMaxPreambleBytes = 512;

// The receiving node's one-byte answer.
enum class Reply : char {
  connected = '+',       // the task accepted the connection; the stream is open
  refused = '-',         // not a task of this node of an exposed service on that port
  connect_failed = '!',  // the task did not accept the connection
  malformed = '?',       // the preamble did not parse
};

// The line, newline included.
std::string encode(const Preamble& p);

// Parses one line (without its '\n'). nullopt, with `why` set, when anything is off: wrong
// magic, unknown protocol, a task id that is not 1..64 of [0-9a-zA-Z._-], a port that is not
// 1..65535, an address that is not an IP literal.
std::optional<Preamble> decode(std::string_view line, std::string& why);

}  // namespace routemesh::mesh::overlay
