//! The few fields of an X.509 certificate (RFC 5280) that checking a certificate trusted as
//! it is needs and webpki does not expose: the validity period, the subject's common names,
//! whether a subjectAltName extension is present, and whether it is its own issuer. A small DER reader, not a general
//! parser: anything it does not expect makes the certificate unreadable, which rejects it.

/// What is read from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fields {
    /// `notBefore`, in seconds since the Unix epoch.
    pub(crate) not_before: i64,
    /// `notAfter`, in seconds since the Unix epoch.
    pub(crate) not_after: i64,
    /// The subject's commonName attributes (OID 2.5.4.3) that are text.
    pub(crate) common_names: Vec<String>,
    /// The certificate has a subjectAltName extension (OID 2.5.29.17).
    pub(crate) has_subject_alt_name: bool,
    /// Its issuer is its subject: self-signed, in practice.
    pub(crate) self_issued: bool,
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT Version`.
const VERSION: u8 = 0xa0;
/// `[3] EXPLICIT Extensions`.
const EXTENSIONS: u8 = 0xa3;
/// id-at-commonName, 2.5.4.3.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// id-ce-subjectAltName, 2.5.29.17.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// DER elements one after the other: each is a tag and its contents.
struct Elements<'a>(&'a [u8]);

impl<'a> Elements<'a> {
    /// The next element (tag, contents); `None` at the end or on malformed DER.
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        // Multi-octet tags do not occur in the fields read here.
        if tag & 0x1f == 0x1f {
            return None;
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let octets = usize::from(first & 0x7f);
            if octets == 0 || octets > 4 || rest.len() < octets {
                return None;
            }
            let (len, after) = rest.split_at(octets);
            rest = after;
            len.iter().fold(0usize, |n, &b| n << 8 | usize::from(b))
        };
        if rest.len() < len {
            return None;
        }
        let (contents, after) = rest.split_at(len);
        self.0 = after;
        Some((tag, contents))
    }

    /// The contents of the next element, which must have tag `want`.
    fn expect(&mut self, want: u8) -> Option<&'a [u8]> {
        self.next().filter(|(tag, _)| *tag == want).map(|(_, contents)| contents)
    }
}

/// Reads the fields of a DER certificate:
///
/// ```text
/// Certificate ::= SEQUENCE { tbsCertificate TBSCertificate, ... }
/// TBSCertificate ::= SEQUENCE {
///     version [0] EXPLICIT Version DEFAULT v1, serialNumber INTEGER,
///     signature AlgorithmIdentifier, issuer Name, validity Validity, subject Name,
///     subjectPublicKeyInfo SubjectPublicKeyInfo, issuerUniqueID [1] IMPLICIT OPTIONAL,
///     subjectUniqueID [2] IMPLICIT OPTIONAL, extensions [3] EXPLICIT Extensions OPTIONAL }
/// Validity ::= SEQUENCE { notBefore Time, notAfter Time }
/// ```
pub(crate) fn read(der: &[u8]) -> Option<Fields> {
    let certificate = Elements(der).expect(SEQUENCE)?;
    let mut tbs = Elements(Elements(certificate).expect(SEQUENCE)?);
    let mut next = tbs.next()?;
    if next.0 == VERSION {
        next = tbs.next()?;
    }
    let _serial = next;
    let _signature = tbs.expect(SEQUENCE)?;
    let issuer = tbs.expect(SEQUENCE)?;
    let mut validity = Elements(tbs.expect(SEQUENCE)?);
    let not_before = time(validity.next()?)?;
    let not_after = time(validity.next()?)?;
    let subject = tbs.expect(SEQUENCE)?;
    let _key = tbs.expect(SEQUENCE)?;
    let mut has_subject_alt_name = false;
    while let Some((tag, contents)) = tbs.next() {
        if tag == EXTENSIONS {
            let mut extensions = Elements(Elements(contents).expect(SEQUENCE)?);
            while let Some(extension) = extensions.expect(SEQUENCE) {
                has_subject_alt_name |= Elements(extension).expect(OID)? == SUBJECT_ALT_NAME;
            }
        }
    }
    Some(Fields {
        not_before,
        not_after,
        common_names: common_names(subject)?,
        has_subject_alt_name,
        self_issued: issuer == subject,
    })
}

/// The text commonName values of a Name: `SEQUENCE OF SET OF SEQUENCE { type, value }`.
fn common_names(name: &[u8]) -> Option<Vec<String>> {
    let mut names = Vec::new();
    let mut rdns = Elements(name);
    while let Some(rdn) = rdns.expect(SET) {
        let mut attributes = Elements(rdn);
        while let Some(attribute) = attributes.expect(SEQUENCE) {
            let mut parts = Elements(attribute);
            if parts.expect(OID)? != COMMON_NAME {
                continue;
            }
            // UTF8String, PrintableString, IA5String: the text forms in use.
            if let Some((0x0c | 0x13 | 0x16, value)) = parts.next() {
                names.push(String::from_utf8(value.to_vec()).ok()?);
            }
        }
    }
    Some(names)
}

/// A `Time` in the forms RFC 5280 section 4.1.2.5 prescribes: UTCTime `YYMMDDHHMMSSZ`
/// (years 1950-2049) or GeneralizedTime `YYYYMMDDHHMMSSZ`; seconds since the Unix epoch.
fn time((tag, text): (u8, &[u8])) -> Option<i64> {
    let digits = |s: &[u8]| -> Option<i64> {
        s.iter().try_fold(0i64, |n, &b| b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0')))
    };
    let (year, rest) = match (tag, text.len()) {
        (UTC_TIME, 13) => {
            let yy = digits(&text[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        (GENERALIZED_TIME, 15) => (digits(&text[..4])?, &text[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let field = |at: usize| digits(&rest[at..at + 2]);
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Seconds up to 60: a leap second is a valid time.
    if second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian calendar (Howard
/// Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_both_forms() {
        assert_eq!(time((UTC_TIME, b"700101000000Z")), Some(0));
        assert_eq!(time((UTC_TIME, b"491231235959Z")), Some(2_524_607_999));
        assert_eq!(time((UTC_TIME, b"500101000000Z")), Some(-631_152_000));
        assert_eq!(time((GENERALIZED_TIME, b"20240229120000Z")), Some(1_709_208_000));
        assert_eq!(time((GENERALIZED_TIME, b"99991231235959Z")), Some(253_402_300_799));
        for bad in [&b"700101000000"[..], b"701301000000Z", b"70010100000aZ", b"7001010000000"] {
            assert_eq!(time((UTC_TIME, bad)), None, "{bad:?}");
        }
        assert_eq!(time((GENERALIZED_TIME, b"700101000000Z")), None);
    }

    #[test]
    fn fields_of_generated_certificates() {
        use pop3_testkit::server::{SelfSigned, TestCa, Validity};
        let with_sans = SelfSigned::generate("pop.test", &["localhost", "::1"], Validity::Now);
        let fields = read(&with_sans.cert_der).unwrap();
        assert!(fields.has_subject_alt_name);
        assert_eq!(fields.common_names, ["pop.test"]);
        assert_eq!(fields.not_before, 157_766_400, "rcgen's default: 1975-01-01");
        assert!(fields.self_issued);
        let cn_only = read(&SelfSigned::generate("localhost", &[], Validity::Expired).cert_der);
        let cn_only = cn_only.unwrap();
        assert!(!cn_only.has_subject_alt_name);
        assert_eq!(cn_only.common_names, ["localhost"]);
        assert_eq!((cn_only.not_before, cn_only.not_after), (946_684_800, 978_307_200));
        let ca = TestCa::generate();
        assert!(read(&ca.cert_der).unwrap().has_subject_alt_name);
        assert!(!read(&ca.cert_der).unwrap().self_issued);
        assert_eq!(read(&ca.ca_der).unwrap().common_names, ["pop3 test CA"]);
        assert_eq!(read(&ca.cert_der[..ca.cert_der.len() - 1]), None, "truncated");
        assert_eq!(read(b"not DER at all"), None);
    }

    #[test]
    fn lengths_short_and_long_and_truncated() {
        let mut long = vec![0x04, 0x81, 200];
        long.extend([7; 200]);
        assert_eq!(Elements(&long).next(), Some((0x04, &[7u8; 200][..])));
        assert_eq!(Elements(&[0x04, 0x02, 1]).next(), None, "truncated");
        assert_eq!(Elements(&[0x04, 0x80]).next(), None, "indefinite length is not DER");
        assert_eq!(Elements(&[0x1f, 0x01, 0x00]).next(), None, "multi-octet tag");
    }
}
