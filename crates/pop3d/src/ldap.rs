//! `[ldap]`: users from an LDAP directory instead of the users file. Its presence makes LDAP
//! the users backend (see `pop3_server::ldap` for what is checked and how failures answer).

use std::path::PathBuf;
use std::time::Duration;

use pop3_server::ldap::{Find, LdapSettings, LdapUsers};
use serde::{Deserialize, Serialize};

use crate::config::Loaded;

/// The `[ldap]` section as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSection {
    /// `ldaps://host[:port]`, or `ldap://host[:port]` with `starttls`.
    pub url: String,
    #[serde(default)]
    pub starttls: bool,
    /// PEM CAs to trust instead of the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub allow_plaintext: bool,
    /// The DN template of a direct bind (`uid=%u,ou=people,dc=example,dc=org`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_dn: Option<String>,
    /// The service account of search-then-bind and lookups (none: anonymous).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_dn: Option<String>,
    /// The file holding the service account's password (first line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_password_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_attribute: Option<String>,
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Seconds: connecting and every operation.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
}

fn default_pool_size() -> usize {
    8
}

fn default_timeout() -> u64 {
    5
}

impl LdapSection {
    /// The backend's settings; the service password is left out when `password` is `None`
    /// (validation before the file is read).
    fn settings(&self, loaded: &Loaded, password: Option<String>) -> Result<LdapSettings, String> {
        let find = match (&self.bind_dn, &self.base, &self.filter) {
            (Some(template), None, None) => Find::Template(template.clone()),
            (None, Some(base), Some(filter)) => {
                Find::Search { base: base.clone(), filter: filter.clone() }
            }
            _ => {
                return Err("[ldap]: set either bind_dn (a DN template) or base and filter \
                     (search-then-bind), not both"
                    .into())
            }
        };
        let mut settings = LdapSettings::new(self.url.clone(), find);
        settings.starttls = self.starttls;
        settings.ca_file = self.ca_file.as_ref().map(|p| loaded.resolve(p));
        settings.allow_plaintext = self.allow_plaintext;
        settings.search_dn = self.search_dn.clone();
        settings.search_password = password;
        settings.home_attribute = self.home_attribute.clone();
        settings.pool_size = self.pool_size;
        settings.timeout = Duration::from_secs(self.timeout);
        Ok(settings)
    }

    /// Checks the section without reading files or contacting the directory.
    pub fn validate(&self, loaded: &Loaded) -> Result<(), String> {
        if self.search_dn.is_some() != self.search_password_file.is_some() {
            return Err("[ldap]: search_dn and search_password_file go together".into());
        }
        // The file is read when the backend is made; a stand-in until then.
        let placeholder = self.search_dn.as_ref().map(|_| "not read yet".to_owned());
        self.settings(loaded, placeholder)?.validate().map_err(|e| format!("[ldap] {e}"))
    }
}

impl Loaded {
    /// The LDAP users backend of `[ldap]`, if there is one: reads the service password file
    /// and the CA file; contacts nothing.
    pub fn users_ldap(&self) -> Option<Result<LdapUsers, String>> {
        let section = self.file.ldap.as_ref()?;
        Some(self.make_ldap(section))
    }

    fn make_ldap(&self, section: &LdapSection) -> Result<LdapUsers, String> {
        let password = match &section.search_password_file {
            Some(path) => {
                let path = self.resolve(path);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("[ldap] search_password_file {}: {e}", path.display()))?;
                // The first line, without its line break: `echo secret > file` works.
                Some(text.lines().next().unwrap_or_default().to_owned())
            }
            None => None,
        };
        LdapUsers::new(section.settings(self, password)?).map_err(|e| format!("[ldap] {e}"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn parse(ldap: &str) -> Result<Loaded, String> {
        let text = format!("[server]\nlisten = [\"127.0.0.1:1110\"]\n{ldap}");
        Loaded::parse(Path::new("/etc/pop3d/pop3d.toml"), &text)
    }

    use super::*;

    #[test]
    fn the_section_is_checked() {
        let template = "[ldap]\nurl = \"ldaps://ldap.example.org\"\nbind_dn = \"uid=%u,dc=org\"\n";
        let loaded = parse(template).unwrap();
        let section = loaded.file.ldap.as_ref().unwrap();
        assert_eq!((section.pool_size, section.timeout), (8, 5));
        let search = "[ldap]\nurl = \"ldaps://h\"\nbase = \"dc=org\"\nfilter = \"(uid=%u)\"\n\
                      search_dn = \"cn=svc,dc=org\"\nsearch_password_file = \"ldap.pw\"\n";
        assert!(parse(search).is_ok());
        let both = format!("{template}base = \"dc=org\"\nfilter = \"(uid=%u)\"\n");
        assert!(parse(&both).unwrap_err().contains("either bind_dn"), "both");
        let neither = "[ldap]\nurl = \"ldaps://h\"\nbase = \"dc=org\"\n";
        assert!(parse(neither).unwrap_err().contains("either bind_dn"), "neither");
        let clear = "[ldap]\nurl = \"ldap://ldap.example.org\"\nbind_dn = \"uid=%u,dc=org\"\n";
        assert!(parse(clear).unwrap_err().contains("in clear"));
        let no_pw = "[ldap]\nurl = \"ldaps://h\"\nbind_dn = \"uid=%u\"\nsearch_dn = \"cn=s\"\n";
        assert!(parse(no_pw).unwrap_err().contains("go together"));
        let with_sql = format!(
            "{template}[users]\nsql = \"SELECT password FROM u WHERE name = $1\"\n\
             [postgresql]\nurl = \"postgresql://localhost/mail\"\n"
        );
        assert!(parse(&with_sql).unwrap_err().contains("[users] sql and [ldap]"));
        let unknown = format!("{template}password = \"x\"\n");
        assert!(parse(&unknown).unwrap_err().contains("unknown field"));
    }

    #[test]
    fn an_empty_password_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ldap.pw"), "\n").unwrap();
        let text = "[server]\nlisten = [\"127.0.0.1:1110\"]\n[ldap]\nurl = \"ldaps://h\"\n\
                    bind_dn = \"uid=%u\"\nsearch_dn = \"cn=s\"\nsearch_password_file = \"ldap.pw\"\n";
        let loaded = Loaded::parse(&dir.path().join("pop3d.toml"), text).unwrap();
        let e = loaded.users_ldap().unwrap().unwrap_err();
        assert!(e.contains("search_password_file is empty"), "{e}");
    }

    #[test]
    fn a_missing_password_file_is_named() {
        let search = "[ldap]\nurl = \"ldaps://h\"\nbase = \"dc=org\"\nfilter = \"(uid=%u)\"\n\
                      search_dn = \"cn=svc,dc=org\"\nsearch_password_file = \"/nonexistent/pw\"\n";
        let e = parse(search).unwrap().users_ldap().unwrap().unwrap_err();
        assert!(e.contains("search_password_file /nonexistent/pw"), "{e}");
    }
}
