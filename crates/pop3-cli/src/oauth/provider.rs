//! Who issues an account's tokens: the `[accounts.NAME.oauth]` section of the config file, the
//! presets for Google and Microsoft, and any OpenID Connect provider found by discovery.

use pop3_client::AuthMethod;
use serde::Deserialize;

use super::http::Http;
use crate::socks::Proxy;

/// `[accounts.NAME.oauth]` as written in the config file.
///
/// ```toml
/// [accounts.gmail.oauth]
/// provider = "google"            # google | microsoft | oidc
/// client_id = "1234.apps.googleusercontent.com"
/// client_secret = "..."          # when the provider gave one (Google's desktop clients)
/// tenant = "common"              # microsoft: common, consumers, organizations or a tenant id
/// issuer = "https://id.example"  # oidc: /.well-known/openid-configuration is read from there
/// scopes = ["..."]               # the preset's unless set
/// mechanism = "xoauth2"          # or oauthbearer; the preset's unless set
/// ```
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    pub provider: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub tenant: Option<String>,
    pub issuer: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub mechanism: Option<String>,
}

/// The issuer of the tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// Google accounts (Gmail).
    Google,
    /// Microsoft identity platform (Outlook.com, Microsoft 365), in this tenant.
    Microsoft { tenant: String },
    /// An OpenID Connect provider, found by discovery from its issuer identifier.
    Oidc { issuer: String },
}

/// The endpoints of a provider.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// Where the user's browser is sent (RFC 6749 section 3.1).
    pub authorization: Option<String>,
    /// Where codes and refresh tokens are exchanged for tokens (section 3.2).
    pub token: String,
    /// Where a device authorization starts (RFC 8628 section 3.1).
    pub device: Option<String>,
}

/// An account's OAuth 2.0 settings, checked.
#[derive(Debug, Clone)]
pub struct OAuth {
    pub provider: Provider,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    /// The SASL mechanism the token is presented with.
    pub mechanism: AuthMethod,
    /// The account's SOCKS5 proxy: every HTTP request of the account goes through it, as its
    /// POP3 connection does (set with [`through`](Self::through)).
    pub proxy: Option<Proxy>,
}

impl OAuth {
    /// Checks the config file's section (before any server is contacted).
    pub fn new(config: &OAuthConfig) -> Result<Self, String> {
        let field = |name: &str, value: &Option<String>, provider: &str| match value {
            Some(_) => Err(format!("oauth.{name} is for provider = \"{provider}\" only")),
            None => Ok(()),
        };
        let (provider, scopes, mechanism) = match config.provider.as_str() {
            "google" => {
                field("tenant", &config.tenant, "microsoft")?;
                field("issuer", &config.issuer, "oidc")?;
                (Provider::Google, vec!["https://mail.google.com/"], AuthMethod::XOAuth2)
            }
            "microsoft" => {
                field("issuer", &config.issuer, "oidc")?;
                let tenant = config.tenant.clone().unwrap_or_else(|| "common".into());
                if tenant.is_empty()
                    || !tenant.chars().all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
                {
                    return Err(format!("oauth.tenant {tenant:?}: expected common, consumers, organizations, a tenant id or a domain"));
                }
                let scopes =
                    vec!["https://outlook.office.com/POP.AccessAsUser.All", "offline_access"];
                (Provider::Microsoft { tenant }, scopes, AuthMethod::XOAuth2)
            }
            "oidc" => {
                field("tenant", &config.tenant, "microsoft")?;
                let issuer = config.issuer.clone().ok_or("provider = \"oidc\" needs oauth.issuer (its discovery document is read from ISSUER/.well-known/openid-configuration)")?;
                check_endpoint(&issuer).map_err(|e| format!("oauth.issuer {e}"))?;
                let issuer = issuer.trim_end_matches('/').to_owned();
                (
                    Provider::Oidc { issuer },
                    vec!["openid", "offline_access"],
                    AuthMethod::OAuthBearer,
                )
            }
            other => {
                return Err(format!("oauth.provider {other:?}: expected google, microsoft or oidc"))
            }
        };
        if config.client_id.is_empty() {
            return Err("oauth.client_id is empty: register the retriever with the provider (an installed or desktop application) and give its client id".into());
        }
        let mechanism = match config.mechanism.as_deref() {
            None => mechanism,
            Some("xoauth2") => AuthMethod::XOAuth2,
            Some("oauthbearer") => AuthMethod::OAuthBearer,
            Some(other) => {
                return Err(format!("oauth.mechanism {other:?}: expected xoauth2 or oauthbearer"))
            }
        };
        let scopes = match &config.scopes {
            Some(scopes) => scopes.clone(),
            None => scopes.into_iter().map(str::to_owned).collect(),
        };
        Ok(Self {
            provider,
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            scopes,
            mechanism,
            proxy: None,
        })
    }

    /// These settings with every request sent through `proxy` (the account's).
    pub fn through(self, proxy: Option<Proxy>) -> Self {
        Self { proxy, ..self }
    }

    /// What stored tokens were obtained from: the provider (with its tenant or issuer). Tokens
    /// of another provider are not sent to this one.
    pub fn key(&self) -> String {
        match &self.provider {
            Provider::Google => "google".into(),
            Provider::Microsoft { tenant } => format!("microsoft:{tenant}"),
            Provider::Oidc { issuer } => format!("oidc:{issuer}"),
        }
    }

    /// Parameters the provider wants on the authorization request: Google gives a refresh
    /// token only for `access_type=offline`, and again only with `prompt=consent`.
    pub fn extra_authorization_params(&self) -> &'static [(&'static str, &'static str)] {
        match self.provider {
            Provider::Google => &[("access_type", "offline"), ("prompt", "consent")],
            _ => &[],
        }
    }

    /// The provider's endpoints: the preset's, or those of the discovery document (OpenID
    /// Connect Discovery 1.0 section 4, whose `issuer` must be the one configured: 4.3).
    pub fn endpoints(&self, http: &Http) -> Result<Endpoints, String> {
        match &self.provider {
            Provider::Google => Ok(Endpoints {
                authorization: Some("https://accounts.google.com/o/oauth2/v2/auth".into()),
                token: "https://oauth2.googleapis.com/token".into(),
                device: Some("https://oauth2.googleapis.com/device/code".into()),
            }),
            Provider::Microsoft { tenant } => {
                let base = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0");
                Ok(Endpoints {
                    authorization: Some(format!("{base}/authorize")),
                    token: format!("{base}/token"),
                    device: Some(format!("{base}/devicecode")),
                })
            }
            Provider::Oidc { issuer } => {
                let url = format!("{issuer}/.well-known/openid-configuration");
                let doc = http.get_json(&url)?;
                let said = doc["issuer"].as_str().unwrap_or_default().trim_end_matches('/');
                if said != issuer {
                    return Err(format!("{url}: its issuer is {said:?}, not {issuer:?}"));
                }
                let endpoint = |name: &str| -> Result<Option<String>, String> {
                    match doc.get(name) {
                        None | Some(serde_json::Value::Null) => Ok(None),
                        Some(serde_json::Value::String(u)) => {
                            check_endpoint(u).map_err(|e| format!("{url}: {name} {e}"))?;
                            Ok(Some(u.clone()))
                        }
                        Some(other) => Err(format!("{url}: {name} is {other}, not a URL")),
                    }
                };
                Ok(Endpoints {
                    authorization: endpoint("authorization_endpoint")?,
                    token: endpoint("token_endpoint")?
                        .ok_or_else(|| format!("{url}: no token_endpoint"))?,
                    device: endpoint("device_authorization_endpoint")?,
                })
            }
        }
    }
}

/// An endpoint must be `https` (RFC 6749 sections 3.1 and 3.2: credentials cross it), except
/// on the loopback interface, where nothing crosses a network.
pub fn check_endpoint(url: &str) -> Result<(), String> {
    let parsed = oauth2::url::Url::parse(url).map_err(|e| format!("{url:?}: {e}"))?;
    let loopback = match parsed.host() {
        Some(oauth2::url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(oauth2::url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(oauth2::url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "{url:?}: expected an https:// URL (http:// only on the loopback interface)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(provider: &str) -> OAuthConfig {
        OAuthConfig { provider: provider.into(), client_id: "id".into(), ..Default::default() }
    }

    #[test]
    fn presets() {
        let google = OAuth::new(&config("google")).unwrap();
        assert_eq!(google.scopes, ["https://mail.google.com/"]);
        assert_eq!(google.mechanism, AuthMethod::XOAuth2);
        let microsoft = OAuth::new(&config("microsoft")).unwrap();
        assert_eq!(microsoft.key(), "microsoft:common");
        assert!(microsoft.scopes.contains(&"offline_access".to_owned()));
        let http = Http::new(std::time::Duration::from_secs(1), None).unwrap();
        let endpoints = microsoft.endpoints(&http).unwrap();
        assert_eq!(endpoints.token, "https://login.microsoftonline.com/common/oauth2/v2.0/token");
        let tenant =
            OAuthConfig { tenant: Some("contoso.onmicrosoft.com".into()), ..config("microsoft") };
        assert_eq!(OAuth::new(&tenant).unwrap().key(), "microsoft:contoso.onmicrosoft.com");
    }

    #[test]
    fn mistakes_are_named() {
        let err = |c: OAuthConfig| OAuth::new(&c).unwrap_err();
        assert!(err(config("yahoo")).contains("expected google, microsoft or oidc"));
        assert!(err(config("oidc")).contains("needs oauth.issuer"));
        let plain = OAuthConfig { issuer: Some("http://id.example".into()), ..config("oidc") };
        assert!(err(plain).contains("https"));
        let slash = OAuthConfig { tenant: Some("a/b".into()), ..config("microsoft") };
        assert!(err(slash).contains("oauth.tenant"));
        let mech = OAuthConfig { mechanism: Some("plain".into()), ..config("google") };
        assert!(err(mech).contains("xoauth2 or oauthbearer"));
        let misplaced = OAuthConfig { issuer: Some("https://x".into()), ..config("google") };
        assert!(err(misplaced).contains("oidc"));
        assert!(
            err(OAuthConfig { client_id: String::new(), ..config("google") }).contains("client_id")
        );
    }

    #[test]
    fn endpoints_need_tls_off_the_loopback() {
        assert!(check_endpoint("https://id.example/token").is_ok());
        assert!(check_endpoint("http://127.0.0.1:8080/token").is_ok());
        assert!(check_endpoint("http://[::1]/token").is_ok());
        assert!(check_endpoint("http://localhost/token").is_ok());
        assert!(check_endpoint("http://id.example/token").is_err());
        assert!(check_endpoint("ftp://127.0.0.1/").is_err());
        assert!(check_endpoint("not a url").is_err());
    }
}
