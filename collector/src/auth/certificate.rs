//! The node a client certificate proves: its Subject common name, else its first DNS subject
//! alternative name. The TLS handshake has verified the chain against `--tls-client-ca` before
//! any call is made; this only reads the name.

use x509_parser::extensions::GeneralName;

/// Why a verified certificate proves no node.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("the client certificate does not parse: {0}")]
    Parse(String),
    #[error("the client certificate names no node: it has no Subject CN and no DNS subject alternative name")]
    NoName,
    #[error("the client certificate's name {0:?} is not a node name (1 to 253 characters, no spaces)")]
    NotANodeName(String),
}

/// The node `der` (the leaf of the client's chain) proves.
pub fn node_of_certificate(der: &[u8]) -> Result<String, CertificateError> {
    let (_, certificate) =
        x509_parser::parse_x509_certificate(der).map_err(|error| CertificateError::Parse(error.to_string()))?;
    let common_name = certificate.subject().iter_common_name().find_map(|cn| cn.as_str().ok()).map(str::to_string);
    let dns_name = || {
        let extension = certificate.subject_alternative_name().ok().flatten()?;
        extension.value.general_names.iter().find_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_string()),
            _ => None,
        })
    };
    let name = common_name.filter(|cn| !cn.is_empty()).or_else(dns_name).ok_or(CertificateError::NoName)?;
    if is_node_name(&name) { Ok(name) } else { Err(CertificateError::NotANodeName(name)) }
}

/// Kubernetes node names are DNS subdomains: at most 253 characters (the same rule the Hello is
/// checked against).
pub fn is_node_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && !name.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    use super::*;

    fn certificate(common_name: Option<&str>, dns_names: &[&str]) -> Vec<u8> {
        let mut params = CertificateParams::new(dns_names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = common_name {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.self_signed(&KeyPair::generate().unwrap()).unwrap().der().to_vec()
    }

    #[test]
    fn the_node_is_the_common_name_else_the_first_dns_name() {
        // (Subject CN, DNS SANs, node proven or the error's start)
        type Case<'a> = (Option<&'a str>, &'a [&'a str], Result<&'a str, &'a str>);
        let table: [Case; 6] = [
            (Some("pi-1"), &[], Ok("pi-1")),
            (Some("pi-1"), &["pi-2.example"], Ok("pi-1")),
            (None, &["pi-3", "pi-4"], Ok("pi-3")),
            (Some(""), &["pi-5"], Ok("pi-5")),
            (None, &[], Err("the client certificate names no node")),
            (Some("two words"), &[], Err("the client certificate's name \"two words\" is not a node name")),
        ];
        for (cn, sans, expected) in table {
            let der = certificate(cn, sans);
            match (node_of_certificate(&der), expected) {
                (Ok(node), Ok(want)) => assert_eq!(node, want, "{cn:?} {sans:?}"),
                (Err(error), Err(start)) => assert!(error.to_string().starts_with(start), "{cn:?} {sans:?}: {error}"),
                (got, want) => panic!("{cn:?} {sans:?}: got {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn an_ip_address_name_proves_no_node_and_garbage_does_not_parse() {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.subject_alt_names = vec![SanType::IpAddress("10.0.0.1".parse().unwrap())];
        let der = params.self_signed(&KeyPair::generate().unwrap()).unwrap().der().to_vec();
        assert!(matches!(node_of_certificate(&der), Err(CertificateError::NoName)));
        assert!(matches!(node_of_certificate(b"not a certificate"), Err(CertificateError::Parse(_))));
    }
}
