#pragma once
// Store commands as JSON (Boost.JSON): {"op": "...", ...}. The proposer (the admin API on the
// leader) builds a Command, encodes it and proposes the bytes to Raft; every replica decodes
// and applies the same bytes (state_machine.h). Pure, never throws (except std::bad_alloc).
//
//   {"op":"network.create","network":{"name","subnet"?}}
//   {"op":"network.delete","name","version"?}
//   {"op":"service.create","service":{"name","labels","networks","ports":[{"published","target","protocol"}],"endpoint_mode"}}
//   {"op":"service.update","service":{...},"version"?}      compare-and-swap when version given
//   {"op":"service.delete","name","version"?}
//   {"op":"task.add","task":{"id","service","node","address","port","health"}}
//   {"op":"task.update","id","health","version"?}
//   {"op":"task.remove","id","version"?}
//   {"op":"node.add","node":{"id","name","role","address","peer","status"}}
//   {"op":"node.update","id","status"?,"role"?,"version"?}
//   {"op":"node.remove","id","version"?}
//   {"op":"cluster.settings","cluster_id"?,"subnet_pool"?,"worker_token_hash"?,
//    "manager_token_hash"?}
//   {"op":"policy.create","policy":{"id","from","to","port"?,"action","priority"?}}
//   {"op":"policy.delete","id","version"?}
//
// A Raft entry (encode_entry) is the command itself, or, for a command proposed with a client's
// request key (the API's Idempotency-Key), {"request":{"key","fingerprint"},"command":{...}}.
// Watch deltas carry the bare command (command_to_json): request keys stay among the managers.

#include "discovery/store/types.h"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <boost/system/result.hpp>

#include <string>
#include <string_view>

namespace routemesh::discovery::store {

// "service.create", ...
std::string_view op_name(const Command& command);

// Canonical JSON of a command (fixed key order; optional fields only when set). Decoding it
// gives back an equal command.
boost::json::object command_to_json(const Command& command);
std::string encode_command(const Command& command);

// Either the command or why it is malformed (code invalid, field like "service.ports[0].target"
// or "op"). Unknown fields are errors.
using DecodeResult = boost::system::result<Command, Error>;
DecodeResult command_from_json(const boost::json::value& value);
DecodeResult decode_command(std::string_view text);

// True for 1..kMaxRequestKeyLength printable ASCII characters (0x20..0x7e): the grammar of a
// request key (an Idempotency-Key header's value).
bool valid_request_key(std::string_view key);

// A Raft entry of the store: encode_command(entry.command) without a request key (so entries
// written before request keys existed decode unchanged), else the envelope above.
std::string encode_entry(const Entry& entry);
// Either the entry or why it is malformed (as decode_command; a bad key or fingerprint is
// invalid at "request.key" / "request.fingerprint").
using EntryResult = boost::system::result<Entry, Error>;
EntryResult decode_entry(std::string_view text);

}  // namespace routemesh::discovery::store
