//! Putting a user name into a DN template or a search filter: the name is always escaped, so
//! no name can change the DN's structure or the filter's meaning (`*`, `)(uid=*`, `,ou=x`).

/// `value` escaped as an attribute value of a DN string (RFC 4514 §2.4): `"`, `+`, `,`, `;`,
/// `<`, `>`, `\` and NUL anywhere, a space or `#` at the start and a space at the end. Control
/// characters are written as `\XX` too, so the DN stays printable in logs.
pub fn dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == 0 || i == last => out.push_str("\\20"),
            '#' if i == 0 => out.push_str("\\23"),
            c if c.is_ascii_control() => out.push_str(&format!("\\{:02x}", c as u8)),
            c => out.push(c),
        }
    }
    out
}

/// `value` escaped as an assertion value of a search filter (RFC 4515 §3): `*`, `(`, `)`, `\`
/// and NUL as `\XX`, so a name can match only itself (no wildcard, no extra clause).
pub fn filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '*' | '(' | ')' | '\\' | '\0' => out.push_str(&format!("\\{:02x}", c as u8)),
            c => out.push(c),
        }
    }
    out
}

/// `template` with every `%u` replaced by `escaped` (already escaped for where it goes).
pub fn substitute(template: &str, escaped: &str) -> String {
    template.replace("%u", escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_values_escape_the_rfc_4514_specials() {
        assert_eq!(dn_value("alice"), "alice");
        assert_eq!(dn_value("a,ou=admins"), "a\\,ou=admins");
        assert_eq!(dn_value("a+cn=x"), "a\\+cn=x");
        assert_eq!(dn_value("x\"y;z<w>v\\u"), "x\\\"y\\;z\\<w\\>v\\\\u");
        assert_eq!(dn_value("#lead"), "\\23lead");
        assert_eq!(dn_value("mid#dle"), "mid#dle");
        assert_eq!(dn_value(" both "), "\\20both\\20");
        assert_eq!(dn_value("in side"), "in side");
        assert_eq!(dn_value("nul\0"), "nul\\00");
        assert_eq!(dn_value("é"), "é");
        assert_eq!(dn_value(""), "");
        assert_eq!(dn_value(" "), "\\20");
    }

    #[test]
    fn filter_values_escape_the_rfc_4515_specials() {
        assert_eq!(filter_value("alice@example.org"), "alice@example.org");
        assert_eq!(filter_value("*"), "\\2a");
        assert_eq!(filter_value("a)(uid=*"), "a\\29\\28uid=\\2a");
        assert_eq!(filter_value("back\\slash"), "back\\5cslash");
        assert_eq!(filter_value("nul\0"), "nul\\00");
    }

    #[test]
    fn escaped_names_keep_the_filter_one_clause() {
        let filter = "(&(objectClass=inetOrgPerson)(uid=%u))";
        let evil = substitute(filter, &filter_value("*)(uid=admin"));
        assert_eq!(evil, "(&(objectClass=inetOrgPerson)(uid=\\2a\\29\\28uid=admin))");
        // ldap3's own parser agrees that it is still one equality clause on uid.
        assert!(ldap3::parse_filter(&evil).is_ok());
        let dn = substitute("uid=%u,ou=people,dc=example,dc=org", &dn_value("x,ou=admins"));
        assert_eq!(dn, "uid=x\\,ou=admins,ou=people,dc=example,dc=org");
    }
}
