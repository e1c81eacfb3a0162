//! PEM text in and out: certificates and private keys as OpenSSL and rcgen write them.
//!
//! Reading uses `x509_parser::pem`; writing is a small base64 encoder (64-character lines,
//! RFC 7468), so no extra crate is needed.

use x509_parser::pem::Pem;

use super::IdentityError;

/// PEM label of an X.509 certificate (RFC 7468).
pub(crate) const CERTIFICATE_LABEL: &str = "CERTIFICATE";

/// Every certificate in a PEM text, as DER, in file order.
///
/// Only blocks labelled `CERTIFICATE` are returned; text around the blocks and blocks with
/// other labels (keys, `TRUSTED CERTIFICATE`, parameters) are skipped. The DER is not
/// parsed here: pass each one to [`super::parse_certificate`] or
/// [`super::verify_self_signed`]. A text with no certificate gives an empty vector.
///
/// # Errors
/// [`IdentityError::PemMalformed`] if a block has no END line, its body is not valid
/// base64, or the text is not UTF-8 lines.
pub fn certs_from_pem(text: &[u8]) -> Result<Vec<Vec<u8>>, IdentityError> {
    Ok(pem_blocks(text)?
        .into_iter()
        .filter(|p| p.label == CERTIFICATE_LABEL)
        .map(|p| p.contents)
        .collect())
}

/// Every PEM block in `text`, any label, in order.
pub(crate) fn pem_blocks(text: &[u8]) -> Result<Vec<Pem>, IdentityError> {
    Pem::iter_from_buffer(text)
        .map(|r| r.map_err(|_| IdentityError::PemMalformed))
        .collect()
}

/// Encodes `der` as one PEM block with `label` (`-----BEGIN {label}-----`, base64 in lines
/// of 64 characters, `-----END {label}-----`, each line ending in `\n`).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = ((n >> (18 - 6 * i)) & 0x3f) as usize;
                b64.push(char::from(ALPHABET[idx]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // The base64 alphabet is ASCII, so every chunk is valid UTF-8.
        out.push_str(core::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_all_lengths() {
        for len in 0..200usize {
            let der: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = pem_encode("CERTIFICATE", &der);
            assert!(text.lines().all(|l| l.len() <= 64));
            let back = certs_from_pem(text.as_bytes()).expect("decode");
            assert_eq!(back, vec![der]);
        }
    }

    #[test]
    fn known_vector_and_other_labels_skipped() {
        let text = format!(
            "junk before\n{}{}trailing words\n",
            pem_encode("PRIVATE KEY", b"k"),
            pem_encode("CERTIFICATE", b"foobar")
        );
        assert!(text.contains("Zm9vYmFy"));
        assert_eq!(
            certs_from_pem(text.as_bytes()),
            Ok(vec![b"foobar".to_vec()])
        );
        assert_eq!(certs_from_pem(b"no pem here"), Ok(vec![]));
        assert_eq!(certs_from_pem(b""), Ok(vec![]));
    }

    #[test]
    fn malformed_pem_is_an_error() {
        assert_eq!(
            certs_from_pem(b"-----BEGIN CERTIFICATE-----\nZm9v\n"),
            Err(IdentityError::PemMalformed)
        );
        assert_eq!(
            certs_from_pem(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
            Err(IdentityError::PemMalformed)
        );
        assert_eq!(
            certs_from_pem(b"\xff\xfe\x00binary\n-----BEGIN CERTIFICATE-----\n"),
            Err(IdentityError::PemMalformed)
        );
    }
}
