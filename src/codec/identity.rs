//! The public client identities of the clouds (FIELD-NOTES §2.1, DH-P2P §13).
//!
//! A WSSE pair identifies the client *application* to a cloud, not a user.
//! Pairs get rotated and every OEM cloud has its own, so they live here in one
//! table and can be overridden. Nothing here reads the environment: the caller
//! passes a lookup (the binary passes `std::env::var`).

use std::str::FromStr;

pub use super::cloud::Dialect;
use super::cloud::{HostPort, RequestStyle};

/// Overrides applied by [`CloudProfile::with_overrides`], by variable name.
pub const ENV_CLOUD_HOST: &str = "DHP2P_CLOUD_HOST";
pub const ENV_CLOUD_PORT: &str = "DHP2P_CLOUD_PORT";
pub const ENV_WSSE_USER: &str = "DHP2P_WSSE_USER";
pub const ENV_WSSE_KEY: &str = "DHP2P_WSSE_KEY";
pub const ENV_DIALECT: &str = "DHP2P_DIALECT";

/// A cloud: where its main server is and how a client signs in to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CloudProfile {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub key: String,
    pub dialect: Dialect,
}

/// Why a profile could not be chosen or overridden.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "unknown cloud {name:?}: want one of easy4ip, easy4ip-retired, amcrest, dmss, or HOST:PORT"
    )]
    UnknownProfile { name: String },
    #[error("{var} is set but empty")]
    Empty { var: &'static str },
    #[error("{var}={value:?} is not a port number (1-65535)")]
    BadPort { var: &'static str, value: String },
    #[error("{var}={value:?} is not a dialect: want `legacy` or `sdk`")]
    BadDialect { var: &'static str, value: String },
}

struct Builtin {
    name: &'static str,
    aliases: &'static [&'static str],
    host: &'static str,
    port: u16,
    username: &'static str,
    key: &'static str,
    dialect: Dialect,
    /// Tried only after the others when no cloud is named (auto order).
    last_resort: bool,
}

const BUILTINS: [Builtin; 4] = [
    // KN commit f6478bf, issue #9: the pair dumped from SmartPSS Lite.
    Builtin {
        name: "easy4ip",
        aliases: &["easy4ipcloud", "smartpss", "default"],
        host: "www.easy4ipcloud.com",
        port: 8800,
        username: "cba1b29e32cb17aa46b8ff9e73c7f40b",
        key: "996103384cdf19179e19243e959bbf8b",
        dialect: Dialect::Legacy,
        last_resort: false,
    },
    // mcw0 2020 (CVE-2020-9501), KN until Oct 2024; some clouds now refuse it.
    Builtin {
        name: "easy4ip-retired",
        aliases: &["p2pclient", "retired"],
        host: "www.easy4ipcloud.com",
        port: 8800,
        username: "P2PClient",
        key: "YXQ3Mahe-5H-R1Z_",
        dialect: Dialect::Legacy,
        // It draws 401/403 nowadays (FIELD-NOTES C7).
        last_resort: true,
    },
    // KN #13, #17. The username holds ONE literal backslash.
    Builtin {
        name: "amcrest",
        aliases: &["amcrestview"],
        host: "p2p.amcrestview.com",
        port: 8800,
        username: "default\\1ee97e027b2140a19b08606dcede9b9e",
        key: "da16f30fd0af413d97921ce0d24e165c",
        dialect: Dialect::Legacy,
        last_resort: false,
    },
    // DF core/profile.go: devices bound through the DMSS app (Dolynk cloud).
    Builtin {
        name: "dmss",
        aliases: &["dolynk", "dolynkcloud"],
        host: "p2p.dolynkcloud.com",
        port: 8800,
        username: "793k5zdi4dd5f037sooag8yo_dolynkc",
        key: "ef8hatgmcuk4qamgg4fxx19x33s9q1xy",
        dialect: Dialect::Sdk,
        last_resort: false,
    },
];

impl Builtin {
    fn profile(&self) -> CloudProfile {
        CloudProfile {
            name: self.name.to_owned(),
            host: self.host.to_owned(),
            port: self.port,
            username: self.username.to_owned(),
            key: self.key.to_owned(),
            dialect: self.dialect,
        }
    }
}

/// Every built-in profile, the default (`easy4ip`) first.
pub fn profiles() -> Vec<CloudProfile> {
    BUILTINS.iter().map(Builtin::profile).collect()
}

/// Every built-in profile in the order to try them when the user names no
/// cloud: the default first, last-resort pairs at the end.
pub fn auto_order() -> Vec<CloudProfile> {
    let mut builtins: Vec<&Builtin> = BUILTINS.iter().collect();
    builtins.sort_by_key(|b| b.last_resort);
    builtins.into_iter().map(Builtin::profile).collect()
}

/// The profile dhp2p uses unless told otherwise (protocol README).
pub fn default_profile() -> CloudProfile {
    BUILTINS[0].profile()
}

/// A built-in profile by name or alias, any case (`dolynk` → `dmss`).
pub fn by_name(name: &str) -> Option<CloudProfile> {
    BUILTINS
        .iter()
        .find(|b| {
            b.name.eq_ignore_ascii_case(name)
                || b.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
        .map(Builtin::profile)
}

/// A profile name or alias, or `HOST:PORT` for a custom cloud (e.g. the
/// emulator), which takes the default profile's pair and dialect.
pub fn resolve(spec: &str) -> Result<CloudProfile, IdentityError> {
    if let Some(profile) = by_name(spec) {
        return Ok(profile);
    }
    let address = HostPort::from_str(spec).map_err(|_| IdentityError::UnknownProfile {
        name: spec.to_owned(),
    })?;
    if address.port == 0 {
        return Err(IdentityError::UnknownProfile {
            name: spec.to_owned(),
        });
    }
    Ok(CloudProfile {
        name: "custom".to_owned(),
        host: address.host,
        port: address.port,
        ..default_profile()
    })
}

impl CloudProfile {
    /// Applies `DHP2P_CLOUD_HOST`, `DHP2P_CLOUD_PORT`, `DHP2P_WSSE_USER`,
    /// `DHP2P_WSSE_KEY` and `DHP2P_DIALECT` where `lookup` finds them.
    pub fn with_overrides(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<CloudProfile, IdentityError> {
        let get = |var: &'static str| -> Result<Option<String>, IdentityError> {
            match lookup(var) {
                Some(value) if value.is_empty() => Err(IdentityError::Empty { var }),
                other => Ok(other),
            }
        };
        if let Some(host) = get(ENV_CLOUD_HOST)? {
            self.host = host;
        }
        if let Some(port) = get(ENV_CLOUD_PORT)? {
            self.port = port
                .parse()
                .ok()
                .filter(|p| *p != 0 && port.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(IdentityError::BadPort {
                    var: ENV_CLOUD_PORT,
                    value: port.clone(),
                })?;
        }
        if let Some(user) = get(ENV_WSSE_USER)? {
            self.username = user;
        }
        if let Some(key) = get(ENV_WSSE_KEY)? {
            self.key = key;
        }
        if let Some(dialect) = get(ENV_DIALECT)? {
            self.dialect = dialect.parse().map_err(|_| IdentityError::BadDialect {
                var: ENV_DIALECT,
                value: dialect.clone(),
            })?;
        }
        Ok(self)
    }

    /// `host:port` of the main server.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The request layout for this cloud's dialect.
    pub fn request_style(&self) -> RequestStyle {
        self.dialect.default_style()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_order_tries_the_default_first_and_last_resort_pairs_last() {
        let order: Vec<String> = auto_order().into_iter().map(|p| p.name).collect();
        assert_eq!(order.first(), Some(&default_profile().name));
        let last_resort: Vec<&str> = BUILTINS
            .iter()
            .filter(|b| b.last_resort)
            .map(|b| b.name)
            .collect();
        assert!(!last_resort.is_empty());
        assert_eq!(
            order[order.len() - last_resort.len()..].to_vec(),
            last_resort
        );
        assert_eq!(order.len(), BUILTINS.len());
    }
}
