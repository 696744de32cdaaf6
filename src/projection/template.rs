//! `extraKeys` templates: `{name}` and `{name|urlencode}` placeholders over the credential's
//! values; `{{` and `}}` are literal braces. Validated before any token exists, so a bad
//! template stalls the credential instead of failing a rotation.

use std::fmt::Write;

/// The placeholders a template may use: the credential's keys.
pub use crate::aws::CREDENTIAL_KEYS as PLACEHOLDERS;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Literal(&'a str),
    Value { name: &'a str, urlencode: bool },
}

/// Checks a template, saying what is wrong in terms the user can act on.
pub fn validate(template: &str) -> Result<(), String> {
    parse(template).map(|_| ())
}

/// Renders a template; `value` looks up a placeholder (it is only called for valid names).
pub fn render(template: &str, value: impl Fn(&str) -> String) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 256);
    for piece in parse(template)? {
        match piece {
            Piece::Literal(text) => out.push_str(text),
            Piece::Value { name, urlencode: false } => out.push_str(&value(name)),
            Piece::Value { name, urlencode: true } => percent_encode(&value(name), &mut out),
        }
    }
    Ok(out)
}

fn parse(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("{{") {
            pieces.push(Piece::Literal("{"));
            rest = after;
        } else if let Some(after) = rest.strip_prefix("}}") {
            pieces.push(Piece::Literal("}"));
            rest = after;
        } else if let Some(after) = rest.strip_prefix('{') {
            let end = after
                .find('}')
                .ok_or_else(|| "an unclosed '{' (write '{{' for a literal brace)".to_owned())?;
            let inner = &after[..end];
            let (name, urlencode) = match inner.split_once('|') {
                None => (inner, false),
                Some((name, "urlencode")) => (name, true),
                Some((_, filter)) => return Err(format!("unknown filter {filter:?} (only 'urlencode' exists)")),
            };
            if !PLACEHOLDERS.contains(&name) {
                return Err(format!(
                    "unknown placeholder {{{name}}}; use one of {{{}}}",
                    PLACEHOLDERS.join("}, {")
                ));
            }
            pieces.push(Piece::Value { name, urlencode });
            rest = &after[end + 1..];
        } else if rest.starts_with('}') {
            return Err("a lone '}' (write '}}' for a literal brace)".to_owned());
        } else {
            let end = rest.find(['{', '}']).unwrap_or(rest.len());
            pieces.push(Piece::Literal(&rest[..end]));
            rest = &rest[end..];
        }
    }
    Ok(pieces)
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn percent_encode(value: &str, out: &mut String) {
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn values(name: &str) -> String {
        match name {
            "password" => "host/?Action=DbConnect&X-Amz-Signature=ab%2F".to_owned(),
            "username" => "admin".to_owned(),
            other => format!("<{other}>"),
        }
    }

    #[test]
    fn renders_values_and_url_encodes_on_request() {
        let url = render(
            "postgres://{username}:{password|urlencode}@{host}:{port}/{dbname}",
            values,
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://admin:host%2F%3FAction%3DDbConnect%26X-Amz-Signature%3Dab%252F@<host>:<port>/<dbname>"
        );
        assert_eq!(render("{password}", values).unwrap(), values("password"));
        assert_eq!(render("{{literal}} {region}", values).unwrap(), "{literal} <region>");
    }

    #[test]
    fn rejects_what_it_cannot_render_with_a_helpful_message() {
        assert!(
            validate("{secret}")
                .unwrap_err()
                .contains("unknown placeholder {secret}")
        );
        assert!(validate("{password|base64}").unwrap_err().contains("unknown filter"));
        assert!(validate("{password").unwrap_err().contains("unclosed"));
        assert!(validate("x}y").unwrap_err().contains("lone '}'"));
        assert!(validate("").is_ok());
        assert!(validate("plain text").is_ok());
    }
}
