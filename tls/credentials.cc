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

// Autolock's forms on disk (credentials.h).
constexpr std::string_view kLockedManagerKey = "locked:";
constexpr std::string_view kEncryptedKeyPem = "-----BEGIN ENCRYPTED PRIVATE KEY-----";

// The text of the manager-key file (`manager` true) or of node-key.pem for `text`: as it is
// without an unlock key, else encrypted with it.
boost::system::result<std::string> lock(const std::string& text, const std::string& unlock_key,
                                        bool manager) {
  if (unlock_key.empty() || text.empty()) {
    return text;
  }
  if (manager) {
    auto wrapped = wrap_manager_key(text, unlock_key);
    if (!wrapped) {
      return wrapped.error();
    }
    return std::string(kLockedManagerKey) + *wrapped;
  }
  return seal_key(text, unlock_key);
}

// The other way: `text` opened with `unlock_key` when it is locked; `locked` records that.
boost::system::result<void> unlock(std::string& text, const std::string& unlock_key, bool manager,
                                   bool& locked) {
  const bool is_locked = manager ? text.starts_with(kLockedManagerKey)
                                 : text.find(kEncryptedKeyPem) != std::string::npos;
  if (!is_locked) {
    return {};
  }
  if (unlock_key.empty()) {
    return errc::locked;
  }
  auto opened = manager ? unwrap_manager_key(
                              std::string_view(text).substr(kLockedManagerKey.size()), unlock_key)
                        : unseal_key(text, unlock_key);
  if (!opened) {
    return errc::wrong_unlock_key;
  }
  text = std::move(*opened);
  locked = true;
  return {};
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
      const bool manager_key = text == &credentials.manager_key;
      auto on_disk = manager_key ? lock(*text, credentials.unlock_key, true)
                                 : boost::system::result<std::string>(*text);
      if (!on_disk) {
        return on_disk.error();
      }
      if (auto r = write(dir, name, *on_disk, kPrivateMode); !r) {
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
  auto key = lock(credentials.key_pem, credentials.unlock_key, false);
  if (!key) {
    return key.error();
  }
  if (auto r = write(dir, "node-key.pem", *key, kPrivateMode); !r) {
    return r;
  }
  return write(dir, "node.pem", credentials.cert_pem, kPublicMode);
}

boost::system::result<void> renew_node_credentials(const std::string& data_dir,
                                                   const std::string& cert_pem,
                                                   const std::string& key_pem,
                                                   const std::string& unlock_key) {
  const std::string dir = tls_dir(data_dir);
  auto old_key = read_credential_file(dir + "/node-key.pem");
  if (!old_key) {
    return old_key.error();
  }
  auto key = lock(key_pem, unlock_key, false);
  if (!key) {
    return key.error();
  }
  if (auto r = write(dir, "node-key.pem.old", *old_key, kPrivateMode); !r) {
    return r;
  }
  if (auto r = write(dir, "node-key.pem", *key, kPrivateMode); !r) {
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

boost::system::result<NodeCredentials> read_node_credentials(const std::string& data_dir,
                                                             const std::string& unlock_key) {
  const std::string dir = tls_dir(data_dir);
  NodeCredentials out;
  bool locked = false;
  for (auto [name, field] :
       {std::pair{"node.pem", &out.cert_pem}, std::pair{"node-key.pem", &out.key_pem},
        std::pair{"ca.pem", &out.ca_pem}}) {
    auto text = read_credential_file(dir + "/" + name);
    if (!text) {
      return text.error();
    }
    *field = std::move(*text);
  }
  if (auto r = unlock(out.key_pem, unlock_key, false, locked); !r) {
    return r.error();
  }
  if (!check_pair(out.cert_pem, out.key_pem)) {
    auto old_key = read_credential_file(dir + "/node-key.pem.old");
    bool old_locked = false;
    if (old_key && unlock(*old_key, unlock_key, false, old_locked) &&
        check_pair(out.cert_pem, *old_key)) {
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
  if (auto r = unlock(out.manager_key, unlock_key, true, locked); !r) {
    return r.error();
  }
  out.unlock_key = locked ? unlock_key : std::string{};
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
