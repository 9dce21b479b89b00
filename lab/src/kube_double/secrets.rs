//! Secrets as the API server stores them: `stringData` in base64 `data`, `type` set. Pure.

use serde_json::{Map, Value, json};

/// Why the API server would refuse a Secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum SecretError {
    #[error("{0} is not an object")]
    NotAnObject(&'static str),
    #[error("{field}.{key} is not a string")]
    NotAString { field: &'static str, key: String },
    #[error("data.{0} is not base64 (plain text goes in stringData)")]
    NotBase64(String),
    #[error("type is not a string")]
    TypeNotAString,
}

/// The type the API server gives a Secret created without one.
const DEFAULT_TYPE: &str = "Opaque";

/// Turns the Secret `map` into what the API server stores: `stringData` encoded into `data` (its
/// keys win over `data`'s, as on a real server), `type` set.
pub(super) fn normalise(map: &mut Map<String, Value>) -> Result<(), SecretError> {
    let mut data = object_field(map, "data")?;
    for (key, value) in &data {
        let text = value.as_str().ok_or_else(|| SecretError::NotAString { field: "data", key: key.clone() })?;
        if !is_base64(text) {
            return Err(SecretError::NotBase64(key.clone()));
        }
    }
    for (key, value) in object_field(map, "stringData")? {
        let text = value.as_str().ok_or_else(|| SecretError::NotAString { field: "stringData", key: key.clone() })?;
        data.insert(key, json!(base64(text.as_bytes())));
    }
    if !data.is_empty() {
        map.insert("data".into(), Value::Object(data));
    }
    match map.get("type") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) if kind.is_empty() => {}
        Some(Value::String(_)) => return Ok(()),
        Some(_) => return Err(SecretError::TypeNotAString),
    }
    map.insert("type".into(), json!(DEFAULT_TYPE));
    Ok(())
}

/// Removes `field` from `map`: its entries, none when absent or null.
fn object_field(map: &mut Map<String, Value>, field: &'static str) -> Result<Map<String, Value>, SecretError> {
    match map.remove(field) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(entries)) => Ok(entries),
        Some(_) => Err(SecretError::NotAnObject(field)),
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, the encoding of `data` values in the API's JSON.
pub(super) fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Whether `text` is standard, padded base64 (what the API server's decoder accepts).
fn is_base64(text: &str) -> bool {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return false;
    }
    let body = text.trim_end_matches('=');
    bytes.len() - body.len() <= 2 && body.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_the_standard_padded_one() {
        for (plain, encoded) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg==")] {
            assert_eq!(base64(plain.as_bytes()), encoded);
            assert!(is_base64(encoded), "{encoded}");
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
        for bad in ["Zg", "Zg=", "Z===", "Zm9v!", "Zm 9"] {
            assert!(!is_base64(bad), "{bad}");
        }
    }

    #[test]
    fn string_data_is_encoded_into_data_and_the_type_defaults_to_opaque() {
        let mut secret = json!({"data": {"a": "YQ==", "b": "Yg=="}, "stringData": {"b": "bee", "token": "s3cr3t"}});
        let map = secret.as_object_mut().unwrap();
        normalise(map).unwrap();
        assert_eq!(
            Value::Object(map.clone()),
            json!({"data": {"a": "YQ==", "b": "YmVl", "token": "czNjcjN0"}, "type": "Opaque"})
        );
        let mut typed = json!({"type": "kubernetes.io/service-account-token"});
        normalise(typed.as_object_mut().unwrap()).unwrap();
        assert_eq!(typed, json!({"type": "kubernetes.io/service-account-token"}));

        let refused = |value: Value| normalise(value.clone().as_object_mut().unwrap()).unwrap_err();
        assert_eq!(refused(json!({"data": {"t": "plain text"}})), SecretError::NotBase64("t".into()));
        assert_eq!(refused(json!({"data": []})), SecretError::NotAnObject("data"));
        assert_eq!(
            refused(json!({"stringData": {"n": 1}})),
            SecretError::NotAString { field: "stringData", key: "n".into() }
        );
        assert_eq!(refused(json!({"type": 3})), SecretError::TypeNotAString);
    }
}
