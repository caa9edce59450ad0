#include "tls/credentials.h"

#include "base/file.h"
#include "tls/pki.h"

#include <filesystem>
#include <system_error>

namespace routemesh::tls {
namespace {

constexpr unsigned kPublicMode = 0644;
constexpr unsigned kPrivateMode = 0600;

// Creates `dir` (and parents) and makes it 0700: it holds private keys.
boost::system::result<void> private_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (!ec) {
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::replace, ec);
  }
  if (ec) {
    return boost::system::error_code(ec.value(), boost::system::system_category());
  }
  return {};
}

boost::system::result<void> write(const std::string& dir, const char* name, const std::string& text,
                                  unsigned mode) {
  return base::write_file_atomic(dir, name, text, mode);
}

}  // namespace

std::string tls_dir(const std::string& data_dir) {
  return data_dir + "/tls";
}

boost::system::result<void> write_node_credentials(const std::string& data_dir,
                                                   const NodeCredentials& credentials) {
  const std::string dir = tls_dir(data_dir);
  if (auto r = private_dir(dir); !r) {
    return r;
  }
  // The keys a manager holds: written when set, removed when not (a demoted manager).
  for (auto [name, text] : {std::pair{"manager-key", &credentials.manager_key},
                            std::pair{"ca-key.pem", &credentials.ca_key_pem}}) {
    if (!text->empty()) {
      if (auto r = write(dir, name, *text, kPrivateMode); !r) {
        return r;
      }
    } else {
      std::error_code ec;
      std::filesystem::remove(dir + "/" + name, ec);
      if (ec) {
        return boost::system::error_code(ec.value(), boost::system::system_category());
      }
    }
  }
  // The key before the certificate: a node.pem on disk always has its key next to it.
  if (auto r = write(dir, "ca.pem", credentials.ca_pem, kPublicMode); !r) {
    return r;
  }
  if (auto r = write(dir, "node-key.pem", credentials.key_pem, kPrivateMode); !r) {
    return r;
  }
  return write(dir, "node.pem", credentials.cert_pem, kPublicMode);
}

boost::system::result<void> renew_node_credentials(const std::string& data_dir,
                                                   const std::string& cert_pem,
                                                   const std::string& key_pem) {
  const std::string dir = tls_dir(data_dir);
  auto old_key = read_credential_file(dir + "/node-key.pem");
  if (!old_key) {
    return old_key.error();
  }
  if (auto r = write(dir, "node-key.pem.old", *old_key, kPrivateMode); !r) {
    return r;
  }
  if (auto r = write(dir, "node-key.pem", key_pem, kPrivateMode); !r) {
    return r;
  }
  if (auto r = write(dir, "node.pem", cert_pem, kPublicMode); !r) {
    return r;
  }
  std::error_code ec;
  std::filesystem::remove(dir + "/node-key.pem.old", ec);
  return {};
}

boost::system::result<std::string> read_credential_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return errc::missing_file;
  }
  auto text = base::read_file(path);
  if (!text) {
    return errc::io_error;
  }
  return std::move(*text);
}

boost::system::result<NodeCredentials> read_node_credentials(const std::string& data_dir) {
  const std::string dir = tls_dir(data_dir);
  NodeCredentials out;
  for (auto [name, field] :
       {std::pair{"node.pem", &out.cert_pem}, std::pair{"node-key.pem", &out.key_pem},
        std::pair{"ca.pem", &out.ca_pem}}) {
    auto text = read_credential_file(dir + "/" + name);
    if (!text) {
      return text.error();
    }
    *field = std::move(*text);
  }
  if (!check_pair(out.cert_pem, out.key_pem)) {
    if (auto old_key = read_credential_file(dir + "/node-key.pem.old");
        old_key && check_pair(out.cert_pem, *old_key)) {
      out.key_pem = std::move(*old_key);
    }
  }
  for (auto [name, field] :
       {std::pair{"manager-key", &out.manager_key}, std::pair{"ca-key.pem", &out.ca_key_pem}}) {
    auto text = read_credential_file(dir + "/" + name);
    if (text) {
      *field = std::move(*text);
    } else if (text.error() != errc::missing_file) {
      return text.error();
    }
  }
  while (!out.manager_key.empty() &&
         (out.manager_key.back() == '\n' || out.manager_key.back() == '\r')) {
    out.manager_key.pop_back();
  }
  return out;
}

std::string default_client_dir(const char* cert_dir, const char* xdg_config_home,
                               const char* home) {
  auto set = [](const char* v) { return v != nullptr && *v != '\0'; };
  if (set(cert_dir)) {
    return cert_dir;
  }
  if (set(xdg_config_home)) {
    return std::string(xdg_config_home) + "/routemesh";
  }
  if (set(home)) {
    return std::string(home) + "/.config/routemesh";
  }
  return {};
}

ClientFiles client_files(const std::string& dir) {
  return ClientFiles{dir + "/ca.pem", dir + "/cert.pem", dir + "/key.pem"};
}

boost::system::result<void> write_client_credentials(const std::string& dir,
                                                     const ClientCredentials& credentials) {
  if (auto r = private_dir(dir); !r) {
    return r;
  }
  if (auto r = write(dir, "key.pem", credentials.key_pem, kPrivateMode); !r) {
    return r;
  }
  if (auto r = write(dir, "cert.pem", credentials.cert_pem, kPublicMode); !r) {
    return r;
  }
  return write(dir, "ca.pem", credentials.ca_pem, kPublicMode);
}

}  // namespace routemesh::tls
