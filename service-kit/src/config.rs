//! Configuration from environment variables, read with `envy`.
//!
//! Each service declares a struct whose fields are named after its variables
//! (`postgres_host` reads `POSTGRES_HOST`). Fields are plain scalars so that a
//! malformed value is reported with the variable's name; anything richer
//! (enums, cross-field rules) is checked afterwards with [`ConfigError::invalid`].

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Why the configuration could not be loaded. Its `Display` is one line that
/// names the variable, and never contains a secret's value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("configuration: environment variable {0} is required but not set")]
    Missing(String),
    #[error("configuration: environment variable {name} is invalid: {reason}")]
    Invalid { name: String, reason: String },
}

impl ConfigError {
    pub fn invalid(name: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Reads `T` from the process environment.
pub fn from_env<T: DeserializeOwned>() -> Result<T, ConfigError> {
    from_vars(std::env::vars())
}

/// Reads `T` from the given variables (used by tests instead of the process env).
pub fn from_vars<T, I>(vars: I) -> Result<T, ConfigError>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = (String, String)>,
{
    envy::from_iter(vars).map_err(|error| match error {
        envy::Error::MissingValue(field) => ConfigError::Missing(field.to_uppercase()),
        // envy's parse errors read "<reason> while parsing value '<v>' provided by <NAME>".
        // Only scalar fields are parsed, and secrets are strings, which cannot fail.
        envy::Error::Custom(message) => match message.rsplit_once(" provided by ") {
            Some((reason, name)) => ConfigError::invalid(name, reason),
            None => ConfigError::invalid("(unknown)", message),
        },
    })
}

/// Settings every service reads besides its own.
#[derive(Debug, Clone, Deserialize)]
pub struct RuntimeConfig {
    /// `BIND_ADDRESS`: the address both services listen on. Default `0.0.0.0`.
    #[serde(default = "default_bind_address")]
    pub bind_address: IpAddr,
    /// `LOG_FORMAT`: `json` (one object per line, for log shippers) or `pretty`. Default `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// `SHUTDOWN_DRAIN_SECONDS`: after SIGTERM, how long `/readyz` answers 503 while the
    /// server still accepts requests, so load balancers stop routing here first. Default 0.
    #[serde(default)]
    pub shutdown_drain_seconds: u64,
    /// `SHUTDOWN_TIMEOUT_SECONDS`: how long in-flight requests may take to finish once the
    /// server stops accepting. Default 20.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_seconds: u64,
    /// `HTTP_HEADER_READ_TIMEOUT_SECONDS`: how long a client may take to send a
    /// request's head (request line and headers), from its first byte, or from
    /// the connection's start for the first request. Past it the connection is
    /// closed. Default 10.
    #[serde(default = "default_header_read_timeout")]
    pub http_header_read_timeout_seconds: u64,
    /// `HTTP_IDLE_TIMEOUT_SECONDS`: how long a kept-alive connection may wait
    /// for its next request. Default 60.
    #[serde(default = "default_idle_timeout")]
    pub http_idle_timeout_seconds: u64,
    /// `HTTP_REQUEST_TIMEOUT_SECONDS`: the longest a request may take to get its
    /// response head (a streamed body may go on after it); past it, 503. Default 30.
    #[serde(default = "default_request_timeout")]
    pub http_request_timeout_seconds: u64,
    /// `HTTP_MAX_CONNECTIONS`: open connections at most; further ones wait to be
    /// accepted. Default 4096.
    #[serde(default = "default_max_connections")]
    pub http_max_connections: usize,
    /// `HTTP_MAX_URI_BYTES`: the longest request target (path and query); longer
    /// is 414. Default 8192.
    #[serde(default = "default_max_uri_bytes")]
    pub http_max_uri_bytes: usize,
    /// `HTTP_MAX_HEADER_BYTES`: the most bytes of header names and values a
    /// request may carry; more is 431. Default 16384.
    #[serde(default = "default_max_header_bytes")]
    pub http_max_header_bytes: usize,
}

fn default_bind_address() -> IpAddr {
    IpAddr::from([0, 0, 0, 0])
}
fn default_log_format() -> String {
    "json".to_owned()
}
fn default_shutdown_timeout() -> u64 {
    20
}
fn default_header_read_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    60
}
fn default_request_timeout() -> u64 {
    30
}
fn default_max_connections() -> usize {
    4096
}
fn default_max_uri_bytes() -> usize {
    8192
}
fn default_max_header_bytes() -> usize {
    16_384
}

impl RuntimeConfig {
    /// Reads and checks the shared settings.
    pub fn from_env() -> Result<Self, ConfigError> {
        let config: Self = from_env()?;
        config.validate()
    }

    fn validate(self) -> Result<Self, ConfigError> {
        if !matches!(self.log_format.as_str(), "json" | "pretty") {
            return Err(ConfigError::invalid(
                "LOG_FORMAT",
                format!("expected json or pretty, got '{}'", self.log_format),
            ));
        }
        for (name, value) in [
            (
                "HTTP_HEADER_READ_TIMEOUT_SECONDS",
                self.http_header_read_timeout_seconds,
            ),
            ("HTTP_IDLE_TIMEOUT_SECONDS", self.http_idle_timeout_seconds),
            (
                "HTTP_REQUEST_TIMEOUT_SECONDS",
                self.http_request_timeout_seconds,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(name, "must be at least 1"));
            }
        }
        for (name, value, least) in [
            ("HTTP_MAX_CONNECTIONS", self.http_max_connections, 1),
            ("HTTP_MAX_URI_BYTES", self.http_max_uri_bytes, 256),
            ("HTTP_MAX_HEADER_BYTES", self.http_max_header_bytes, 1024),
        ] {
            if value < least {
                return Err(ConfigError::invalid(
                    name,
                    format!("must be at least {least}"),
                ));
            }
        }
        Ok(self)
    }

    /// The limits the server loop applies to connections.
    pub fn connection_limits(&self) -> crate::server::ConnectionLimits {
        crate::server::ConnectionLimits {
            header_read_timeout: Duration::from_secs(self.http_header_read_timeout_seconds),
            idle_timeout: Duration::from_secs(self.http_idle_timeout_seconds),
            max_connections: self.http_max_connections,
            max_head_bytes: self.http_max_uri_bytes + self.http_max_header_bytes,
        }
    }

    /// The limits every request is held to.
    pub fn request_limits(&self) -> crate::telemetry::RequestLimits {
        crate::telemetry::RequestLimits {
            timeout: Duration::from_secs(self.http_request_timeout_seconds),
            max_uri_bytes: self.http_max_uri_bytes,
            max_header_bytes: self.http_max_header_bytes,
        }
    }

    /// Defaults for tests and embedding: loopback only, pretty logs, no drain.
    pub fn for_tests() -> Self {
        Self {
            bind_address: IpAddr::from([127, 0, 0, 1]),
            log_format: "pretty".to_owned(),
            shutdown_drain_seconds: 0,
            shutdown_timeout_seconds: 5,
            http_header_read_timeout_seconds: default_header_read_timeout(),
            http_idle_timeout_seconds: default_idle_timeout(),
            http_request_timeout_seconds: default_request_timeout(),
            http_max_connections: default_max_connections(),
            http_max_uri_bytes: default_max_uri_bytes(),
            http_max_header_bytes: default_max_header_bytes(),
        }
    }
}

/// Reads an empty value as "not set", as shells and env files write `VAR=`.
pub fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Sample {
        #[allow(dead_code)]
        required_port: u16,
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_missing_variable_is_named_in_upper_case() {
        let error = from_vars::<Sample, _>(vars(&[])).unwrap_err();
        assert_eq!(error, ConfigError::Missing("REQUIRED_PORT".into()));
        assert_eq!(
            error.to_string(),
            "configuration: environment variable REQUIRED_PORT is required but not set"
        );
    }

    #[test]
    fn a_malformed_variable_is_named_with_the_reason() {
        let error = from_vars::<Sample, _>(vars(&[("REQUIRED_PORT", "80x")])).unwrap_err();
        let ConfigError::Invalid { name, reason } = &error else {
            panic!("expected Invalid, got {error:?}");
        };
        assert_eq!(name, "REQUIRED_PORT");
        assert!(reason.contains("80x"), "{reason}");
        assert!(!error.to_string().contains('\n'));
    }

    #[test]
    fn runtime_config_rejects_an_unknown_log_format() {
        let config: RuntimeConfig = from_vars(vars(&[("LOG_FORMAT", "xml")])).unwrap();
        let error = config.validate().unwrap_err();
        assert!(error.to_string().contains("LOG_FORMAT"), "{error}");
    }
}

/// The environment variables a configuration struct reads, in declaration order
/// (field names in upper case). Lets tests check that README, environment.env,
/// compose and the Kubernetes manifests mention every one of them.
pub fn variable_names<T: DeserializeOwned>() -> Vec<String> {
    let mut recorder = FieldRecorder(Vec::new());
    let _ = T::deserialize(&mut recorder);
    recorder.0.iter().map(|f| f.to_uppercase()).collect()
}

/// A deserializer that only records the field list a struct asks for.
struct FieldRecorder(Vec<&'static str>);

#[derive(Debug)]
struct Recorded;

impl std::fmt::Display for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names recorded")
    }
}
impl std::error::Error for Recorded {}
impl serde::de::Error for Recorded {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Recorded
    }
}

impl<'de> serde::Deserializer<'de> for &mut FieldRecorder {
    type Error = Recorded;

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Recorded> {
        self.0.extend_from_slice(fields);
        Err(Recorded)
    }

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        _visitor: V,
    ) -> Result<V::Value, Recorded> {
        Err(Recorded)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod names_tests {
    use super::*;

    #[test]
    fn variable_names_lists_every_field_in_upper_case() {
        assert_eq!(
            variable_names::<RuntimeConfig>(),
            [
                "BIND_ADDRESS",
                "LOG_FORMAT",
                "SHUTDOWN_DRAIN_SECONDS",
                "SHUTDOWN_TIMEOUT_SECONDS",
                "HTTP_HEADER_READ_TIMEOUT_SECONDS",
                "HTTP_IDLE_TIMEOUT_SECONDS",
                "HTTP_REQUEST_TIMEOUT_SECONDS",
                "HTTP_MAX_CONNECTIONS",
                "HTTP_MAX_URI_BYTES",
                "HTTP_MAX_HEADER_BYTES"
            ]
        );
    }
}
