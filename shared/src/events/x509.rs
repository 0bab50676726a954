//! Just enough X.509 to verify an SMN message: the signing certificate's public key,
//! its signature algorithm (SMN signs messages with the algorithm its certificate names,
//! as Huawei's sample code does with `cert.getSigAlgName()`), its validity period, and
//! the names it was issued to (subject CN and SAN dNSNames).
//!
//! A small DER reader for these fields; the chain to a trusted root is checked by
//! `rustls-webpki` in [`super::smn_verify`], which does not expose the subject CN (and
//! matches SAN wildcards, which we do not want: the subject must be named exactly).
//! Every length is bounds-checked; malformed input is an error, never a panic (the
//! parsers are fuzzed).

use base64::Engine;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// A parsed signing certificate.
#[derive(Debug, Clone)]
pub struct SigningCert {
    alg: &'static dyn VerificationAlgorithm,
    alg_name: &'static str,
    public_key: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// The subject's common names, then its SAN dNSNames, as written (not lower-cased).
    pub names: Vec<String>,
}

impl PartialEq for SigningCert {
    fn eq(&self, o: &Self) -> bool {
        self.alg_name == o.alg_name && self.public_key == o.public_key
    }
}

/// Why a certificate (or a PEM bundle) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CertError(pub String);

impl From<&str> for CertError {
    fn from(s: &str) -> Self {
        CertError(s.into())
    }
}

impl From<String> for CertError {
    fn from(s: String) -> Self {
        CertError(s)
    }
}

/// One DER element: tag, content, and what follows it.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), CertError> {
    let (&tag, rest) = input.split_first().ok_or("truncated DER (no tag)")?;
    let (&first, rest) = rest.split_first().ok_or("truncated DER (no length)")?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err("unsupported or truncated DER length".into());
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err("DER element longer than its container".into());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn expect<'a>(input: &'a [u8], want: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), CertError> {
    let (tag, content, rest) = tlv(input)?;
    if tag != want {
        return Err(CertError(format!(
            "{what}: expected DER tag {want:#04x}, found {tag:#04x}"
        )));
    }
    Ok((content, rest))
}

const SEQ: u8 = 0x30;
const OID: u8 = 0x06;
const BIT_STRING: u8 = 0x03;

const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const SHA1_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
const SHA256_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const SHA384_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const SHA512_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];

/// Accept a PEM (`-----BEGIN CERTIFICATE-----`) or DER certificate (the first one of
/// a PEM bundle).
pub fn parse_cert(bytes: &[u8]) -> Result<SigningCert, CertError> {
    let chain = der_chain(bytes)?;
    parse_der(&chain[0])
}

/// The certificates in `bytes`: one DER certificate, or every `CERTIFICATE` block of a
/// PEM bundle in order (the signing certificate first, then any intermediates). Never
/// empty.
pub fn der_chain(bytes: &[u8]) -> Result<Vec<Vec<u8>>, CertError> {
    // DER starts with a SEQUENCE tag; anything else must be PEM.
    if bytes.first() == Some(&SEQ) {
        return Ok(vec![bytes.to_vec()]);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "PEM is not UTF-8")?;
    let (begin, end) = ("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(begin) {
        let body = &rest[at + begin.len()..];
        let stop = body.find(end).ok_or("no END CERTIFICATE in PEM")?;
        let b64: String = body[..stop]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        out.push(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("PEM body is not base64: {e}"))?,
        );
        rest = &body[stop + end.len()..];
        // A chain is the signing certificate and a few intermediates; more is not SMN.
        if out.len() > 8 {
            return Err("more than 8 certificates in the PEM".into());
        }
    }
    if out.is_empty() {
        return Err("no BEGIN CERTIFICATE in PEM".into());
    }
    Ok(out)
}

fn parse_der(der: &[u8]) -> Result<SigningCert, CertError> {
    let (cert, _) = expect(der, SEQ, "Certificate")?;
    let (tbs, rest) = expect(cert, SEQ, "tbsCertificate")?;
    let (sig_alg, _) = expect(rest, SEQ, "signatureAlgorithm")?;
    let (sig_oid, _) = expect(sig_alg, OID, "signatureAlgorithm OID")?;

    // tbsCertificate: [0] version?, serial, signature, issuer, validity, subject, spki, ...
    let mut cur = tbs;
    let (tag, _, rest) = tlv(cur)?;
    if tag == 0xa0 {
        cur = rest;
    }
    let (_, _, rest) = tlv(cur)?; // serialNumber
    let (_, _, rest) = tlv(rest)?; // signature AlgorithmIdentifier
    let (_, _, rest) = tlv(rest)?; // issuer
    let (validity, rest) = expect(rest, SEQ, "validity")?;
    let (subject, rest) = expect(rest, SEQ, "subject")?;
    let (spki, mut rest) = expect(rest, SEQ, "subjectPublicKeyInfo")?;
    let mut names = common_names(subject)?;
    // issuerUniqueID [1], subjectUniqueID [2], extensions [3] (v3 only).
    while !rest.is_empty() {
        let (tag, content, after) = tlv(rest)?;
        if tag == 0xa3 {
            names.extend(san_dns_names(content)?);
        }
        rest = after;
    }

    let (nb_tag, nb, after) = tlv(validity)?;
    let (na_tag, na, _) = tlv(after)?;
    let not_before = der_time(nb_tag, nb)?;
    let not_after = der_time(na_tag, na)?;

    let (key_alg, rest) = expect(spki, SEQ, "subjectPublicKeyInfo algorithm")?;
    let (key_bits, _) = expect(rest, BIT_STRING, "subjectPublicKey")?;
    let (&unused, public_key) = key_bits.split_first().ok_or("empty public key")?;
    if unused != 0 {
        return Err("public key bit string has unused bits".into());
    }
    let (key_oid, params) = expect(key_alg, OID, "public key algorithm OID")?;
    let curve = if key_oid == EC_PUBLIC_KEY {
        Some(expect(params, OID, "EC curve")?.0)
    } else if key_oid == RSA_ENCRYPTION {
        None
    } else {
        return Err("public key is neither RSA nor EC".into());
    };

    let (alg, alg_name): (&'static dyn VerificationAlgorithm, &'static str) = match (sig_oid, curve)
    {
        (SHA256_RSA, None) => (&signature::RSA_PKCS1_2048_8192_SHA256, "SHA256withRSA"),
        (SHA384_RSA, None) => (&signature::RSA_PKCS1_2048_8192_SHA384, "SHA384withRSA"),
        (SHA512_RSA, None) => (&signature::RSA_PKCS1_2048_8192_SHA512, "SHA512withRSA"),
        (SHA1_RSA, None) => (
            &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            "SHA1withRSA",
        ),
        (ECDSA_SHA256, Some(P256)) => (&signature::ECDSA_P256_SHA256_ASN1, "SHA256withECDSA"),
        (ECDSA_SHA256, Some(P384)) => (&signature::ECDSA_P384_SHA256_ASN1, "SHA256withECDSA"),
        (ECDSA_SHA384, Some(P256)) => (&signature::ECDSA_P256_SHA384_ASN1, "SHA384withECDSA"),
        (ECDSA_SHA384, Some(P384)) => (&signature::ECDSA_P384_SHA384_ASN1, "SHA384withECDSA"),
        // The certificate's own algorithm is its issuer's: a key of another type than
        // the issuer's (an EC key under an RSA CA) signs with its own type, SHA-256.
        (_, None) if !is_rsa_sig(sig_oid) => {
            (&signature::RSA_PKCS1_2048_8192_SHA256, "SHA256withRSA")
        }
        (ECDSA_SHA256 | ECDSA_SHA384, _) => {
            return Err("unsupported signature algorithm / key combination".into())
        }
        (_, Some(P256)) => (&signature::ECDSA_P256_SHA256_ASN1, "SHA256withECDSA"),
        (_, Some(P384)) => (&signature::ECDSA_P384_SHA384_ASN1, "SHA384withECDSA"),
        _ => return Err("unsupported signature algorithm / key combination".into()),
    };
    Ok(SigningCert {
        alg,
        alg_name,
        public_key: public_key.to_vec(),
        not_before,
        not_after,
        names,
    })
}

const SET: u8 = 0x31;
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// The CN values of a Name (SEQUENCE OF SET OF AttributeTypeAndValue).
fn common_names(mut name: &[u8]) -> Result<Vec<String>, CertError> {
    let mut out = Vec::new();
    while !name.is_empty() {
        let (mut rdn, rest) = expect(name, SET, "subject RDN")?;
        while !rdn.is_empty() {
            let (atv, more) = expect(rdn, SEQ, "subject attribute")?;
            let (oid, value) = expect(atv, OID, "subject attribute type")?;
            let (tag, text, _) = tlv(value)?;
            // UTF8String, PrintableString, IA5String; other string types are not names
            // a host could be matched against.
            if oid == COMMON_NAME && matches!(tag, 0x0c | 0x13 | 0x16) {
                let cn = std::str::from_utf8(text).map_err(|_| "subject CN is not UTF-8")?;
                out.push(cn.to_string());
            }
            rdn = more;
        }
        name = rest;
    }
    Ok(out)
}

/// The dNSName entries of the subjectAltName extension, if any.
fn san_dns_names(explicit: &[u8]) -> Result<Vec<String>, CertError> {
    let (mut exts, _) = expect(explicit, SEQ, "extensions")?;
    let mut out = Vec::new();
    while !exts.is_empty() {
        let (ext, more) = expect(exts, SEQ, "extension")?;
        exts = more;
        let (oid, rest) = expect(ext, OID, "extension id")?;
        if oid != SUBJECT_ALT_NAME {
            continue;
        }
        // critical BOOLEAN DEFAULT FALSE, then the OCTET STRING holding GeneralNames.
        let (tag, value, after) = tlv(rest)?;
        let (tag, value) = if tag == 0x01 {
            let (t, v, _) = tlv(after)?;
            (t, v)
        } else {
            (tag, value)
        };
        if tag != 0x04 {
            return Err("subjectAltName value is not an OCTET STRING".into());
        }
        let (mut general, _) = expect(value, SEQ, "subjectAltName")?;
        while !general.is_empty() {
            let (tag, name, more) = tlv(general)?;
            // dNSName [2] IMPLICIT IA5String.
            if tag == 0x82 {
                let dns = std::str::from_utf8(name).map_err(|_| "SAN dNSName is not ASCII")?;
                out.push(dns.to_string());
            }
            general = more;
        }
    }
    Ok(out)
}

fn is_rsa_sig(oid: &[u8]) -> bool {
    [SHA1_RSA, SHA256_RSA, SHA384_RSA, SHA512_RSA].contains(&oid)
}

fn der_time(tag: u8, content: &[u8]) -> Result<OffsetDateTime, CertError> {
    let s = std::str::from_utf8(content).map_err(|_| "time is not ASCII")?;
    let digits = s.strip_suffix('Z').ok_or("time is not in UTC (Z)")?;
    let full = match (tag, digits.len()) {
        (0x17, 12) => {
            // UTCTime: YY >= 50 is 19YY (RFC 5280).
            let yy: u32 = digits[..2].parse().map_err(|_| "bad UTCTime")?;
            format!("{}{digits}", if yy >= 50 { "19" } else { "20" })
        }
        (0x18, 14) => digits.to_string(),
        _ => return Err("unsupported certificate time format".into()),
    };
    if !full.bytes().all(|b| b.is_ascii_digit()) {
        return Err("certificate time has non-digits".into());
    }
    let n = |a: usize, b: usize| {
        full[a..b]
            .parse::<u32>()
            .map_err(|_| "bad time".to_string())
    };
    let month = Month::try_from(n(4, 6)? as u8).map_err(|e| e.to_string())?;
    let date = Date::from_calendar_date(n(0, 4)? as i32, month, n(6, 8)? as u8)
        .map_err(|e| e.to_string())?;
    let t = Time::from_hms(n(8, 10)? as u8, n(10, 12)? as u8, n(12, 14)? as u8)
        .map_err(|e| e.to_string())?;
    Ok(PrimitiveDateTime::new(date, t).assume_utc())
}

impl SigningCert {
    pub fn algorithm(&self) -> &'static str {
        self.alg_name
    }

    /// Verify `signature` over `message` with this certificate's key and algorithm.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(self.alg, &self.public_key)
            .verify(message, signature)
            .is_ok()
    }
}
