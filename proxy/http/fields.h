#pragma once
// Looking up fields of a parsed head. Pure functions; the views returned point into the head
// (so into its parser's buffer) and share its lifetime.

#include "proxy/http/types.h"

#include <string_view>
#include <vector>

namespace routemesh::proxy::http {

// The value of the first field called `lower_name` (compared case-insensitively, RFC 9110
// §5.1; `lower_name` must be lower-case), or empty when there is none.
std::string_view find_header(const std::vector<Header>& headers, std::string_view lower_name);

// The value of cookie `name` from the request's Cookie fields (RFC 6265 §5.4: "a=b; c=d"),
// surrounding double quotes removed; empty when absent. Cookie names are case-sensitive.
// The first match wins, across fields in order.
std::string_view find_cookie(const RequestHead& head, std::string_view name);

// Whether a 101 answer switches to a protocol the request asked for (RFC 9110 §7.8): the
// response names at least one protocol in its Upgrade fields and every one it names is in the
// request's Upgrade fields (protocol names compared case-insensitively, versions ignored).
bool upgrade_accepted(const RequestHead& request, const ResponseHead& response);

}  // namespace routemesh::proxy::http
