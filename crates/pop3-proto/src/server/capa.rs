//! The capability list, which depends on the state, TLS and configuration (RFC 2449 §5).

use alloc::vec::Vec;

use super::config::ServerConfig;
use crate::sasl::Mechanism;
use crate::Capability;

/// What CAPA lists:
/// - `USER` and the password-revealing SASL mechanisms (PLAIN, LOGIN) only where plaintext
///   passwords are allowed (RFC 2595 §2.1 and the operator's policy);
/// - `STLS` only before login, before TLS, and when the embedder can do TLS (RFC 2595 §4);
/// - `SASL` and `STLS` only before login (they are useless after);
/// - `EXPIRE` and `LOGIN-DELAY` from the configuration (RFC 2449 §6.5, §6.7).
pub(super) fn capabilities(
    config: &ServerConfig,
    tls_active: bool,
    plaintext_allowed: bool,
    before_login: bool,
) -> Vec<Capability<'static>> {
    let mut list = alloc::vec![
        Capability::Top,
        Capability::Uidl,
        Capability::RespCodes,
        Capability::AuthRespCode,
        Capability::Pipelining,
    ];
    if before_login {
        if plaintext_allowed {
            list.push(Capability::User);
        }
        let mechanisms: Vec<_> =
            offered_mechanisms(config, plaintext_allowed).map(|m| m.name().into()).collect();
        if !mechanisms.is_empty() {
            list.push(Capability::Sasl(mechanisms));
        }
        if config.tls_available && !tls_active {
            list.push(Capability::Stls);
        }
        list.push(Capability::Utf8 { user: true });
    }
    if let Some(policy) = config.expire {
        list.push(Capability::Expire { policy, per_user: false });
    }
    if let Some(seconds) = config.login_delay {
        list.push(Capability::LoginDelay { seconds, per_user: false });
    }
    list.push(Capability::Lang);
    if let Some(implementation) = &config.implementation {
        list.push(Capability::Implementation(implementation.clone().into()));
    }
    list
}

/// The configured mechanisms that may be used on this connection.
pub(super) fn offered_mechanisms(
    config: &ServerConfig,
    plaintext_allowed: bool,
) -> impl Iterator<Item = Mechanism> + '_ {
    config
        .sasl_mechanisms
        .iter()
        .copied()
        .filter(move |m| plaintext_allowed || !(m.sends_password() || m.sends_bearer_token()))
}
