#include "mesh/overlay/preamble.h"

#include "base/address.h"

#include <vector>

namespace routemesh::mesh::overlay {

namespace {

constexpr std::string_view kMagic = "RMOV1";

bool valid_task_id(std::string_view id) {
  if (id.empty() || id.size() > 64) {
    return false;
  }
  for (char c : id) {
    const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

std::vector<std::string_view> split_spaces(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i <= line.size()) {
    const auto sp = line.find(' ', i);
    const auto end = sp == std::string_view::npos ? line.size() : sp;
    out.push_back(line.substr(i, end - i));
    if (sp == std::string_view::npos) {
      break;
    }
    i = sp + 1;
  }
  return out;
}

}  // namespace

std::string encode(const Preamble& p) {
  std::string out;
  out.reserve(96);
  out += kMagic;
  switch (p.protocol) {
    case StreamProtocol::http:
      out += " http ";
      break;
    case StreamProtocol::tcp:
      out += " tcp ";
      break;
    case StreamProtocol::udp:
      out += " udp ";
      break;
  }
  out += p.task_id;
  out += ' ';
  out += std::to_string(p.task_port);
  out += ' ';
  out += p.client_ip;
  out += ' ';
  out += std::to_string(p.client_port);
  out += ' ';
  out += p.dst_ip;
  out += ' ';
  out += std::to_string(p.dst_port);
  out += '\n';
  return out;
}

std::optional<Preamble> decode(std::string_view line, std::string& why) {
  if (line.size() >= kMaxPreambleBytes) {
    why = "preamble too long";
    return std::nullopt;
  }
  const auto parts = split_spaces(line);
  if (parts.size() != 8 || parts[0] != kMagic) {
    why = "not an overlay preamble";
    return std::nullopt;
  }
  Preamble p;
  if (parts[1] == "http") {
    p.protocol = StreamProtocol::http;
  } else if (parts[1] == "tcp") {
    p.protocol = StreamProtocol::tcp;
  } else if (parts[1] == "udp") {
    p.protocol = StreamProtocol::udp;
  } else {
    why = "unknown protocol";
    return std::nullopt;
  }
  if (!valid_task_id(parts[2])) {
    why = "bad task id";
    return std::nullopt;
  }
  p.task_id = std::string(parts[2]);
  auto port = [&](std::string_view text, std::uint16_t& out) {
    auto v = base::parse_port(text);
    if (!v || *v == 0) {
      return false;
    }
    out = *v;
    return true;
  };
  if (!port(parts[3], p.task_port) || !port(parts[5], p.client_port) ||
      !port(parts[7], p.dst_port)) {
    why = "bad port";
    return std::nullopt;
  }
  if (!base::is_ip_literal(parts[4]) || !base::is_ip_literal(parts[6])) {
    why = "bad address";
    return std::nullopt;
  }
  p.client_ip = std::string(parts[4]);
  p.dst_ip = std::string(parts[6]);
  return p;
}

}  // namespace routemesh::mesh::overlay
