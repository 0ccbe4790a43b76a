//! Cloud messages (DH-HTTP over UDP): serials and tokens in the path, the
//! WSSE header, secret XML elements and every dotted address.
//!
//! The message is read by the codec (`cloud::decode`, `XmlBody`); values are
//! changed in the decoded message and written back by the codec's encoder,
//! which is exact for everything it accepts. Only canonical XML bodies (the
//! way every client writes them) are rewritten; anything else holding XML is
//! refused.
//!
//! Re-encoding rather than patching byte ranges is deliberate: an address
//! stand-in may change a value's length, and the encoder then writes the
//! new Content-Length with everything else byte for byte. Only what the
//! codec refused is scrubbed by pattern ([`rewrite_malformed`],
//! [`scrub_markup`]), because there is no structure left to read.

use crate::codec::cloud::{Endpoint, Header, Message, WsseRanges, XmlBody, XmlElement};

use super::names::Names;
use super::{Counts, RedactError};

/// XML elements whose text is a secret or identifies someone; matched
/// case-insensitively, as whole names or (the last group) as parts.
const SECRET_ELEMENTS: [&str; 4] = ["devauth", "nonce", "randsalt", "info"];
const SECRET_PARTS: [&str; 8] = [
    "auth", "token", "user", "pass", "pwd", "key", "secret", "sign",
];
/// Elements that hold a serial number.
const SERIAL_ELEMENTS: [&str; 5] = ["sn", "serial", "deviceid", "devsn", "devid"];

/// The WSSE fields that are secret (`Created` is a time and stays).
const WSSE_SECRETS: [&str; 3] = ["Username", "PasswordDigest", "Nonce"];

fn element_kind(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if SERIAL_ELEMENTS.contains(&lower.as_str()) {
        return Some("serial");
    }
    // Identify and SID are per-session random values, not secrets: kept so
    // a reader can match the punch and the relay session.
    if lower == "identify" || lower == "sid" {
        return None;
    }
    if SECRET_ELEMENTS.contains(&lower.as_str()) || SECRET_PARTS.iter().any(|p| lower.contains(p)) {
        return Some(match lower.as_str() {
            "devauth" => "DevAuth",
            "nonce" => "nonce",
            "info" => "Info blob",
            "token" => "token",
            "username" => "username",
            _ => "secret element",
        });
    }
    None
}

/// The redacted datagram for a cloud message that decoded.
pub(super) fn rewrite(
    message: &Message,
    names: &mut Names,
    counts: &mut Counts,
) -> Result<Vec<u8>, RedactError> {
    let mut message = message.clone();
    let (headers, body) = match &mut message {
        Message::Request(request) => {
            request.path = rewrite_path(&request.path, names, counts)?;
            (&mut request.headers, &mut request.body)
        }
        Message::Response(response) => (&mut response.headers, &mut response.body),
    };
    let declared = cloud_content_length(headers);
    let old_len = body.len();
    *body = rewrite_body(body, names, counts)?;
    for header in headers.iter_mut() {
        rewrite_header(header, names, counts)?;
    }
    if body.len() != old_len {
        if declared == Some(old_len) {
            for header in headers.iter_mut() {
                if header.name.eq_ignore_ascii_case("Content-Length") {
                    header.value = body.len().to_string();
                }
            }
            counts.add("Content-Length fixed", 1);
        } else {
            return Err(RedactError::Unsafe(
                "an address in a cloud body changes length, and the message has no \
                 Content-Length that matched its body"
                    .into(),
            ));
        }
    }
    Ok(match &message {
        Message::Request(r) => r.encode(),
        Message::Response(r) => r.encode(),
    })
}

fn cloud_content_length(headers: &[Header]) -> Option<usize> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("Content-Length"))
        .and_then(|h| h.value.trim().parse().ok())
}

fn rewrite_path(path: &str, names: &mut Names, counts: &mut Counts) -> Result<String, RedactError> {
    let mut path = path.to_owned();
    match Endpoint::parse(&path) {
        Endpoint::OnlineP2pSrv { serial }
        | Endpoint::ProbeDevice { serial }
        | Endpoint::InfoDevice { serial }
        | Endpoint::P2pChannel { serial }
        | Endpoint::RelayChannel { serial }
        | Endpoint::LocalChannel { serial }
        | Endpoint::TcpRelayChannel { serial } => {
            let pseudonym = names.text_swept("serial", &serial);
            path = path.replace(&serial, &pseudonym);
            counts.add("serial", 1);
        }
        Endpoint::RelayStart { token } | Endpoint::RelayUnbind { token } => {
            let pseudonym = names.text_swept("token", &token);
            path = path.replace(&token, &pseudonym);
            counts.add("token", 1);
        }
        _ => {}
    }
    let (bytes, addresses) = names.text_ips(path.as_bytes())?;
    counts.add("address", addresses);
    String::from_utf8(bytes).map_err(|_| RedactError::Unsafe("path is not UTF-8".into()))
}

fn rewrite_header(
    header: &mut Header,
    names: &mut Names,
    counts: &mut Counts,
) -> Result<(), RedactError> {
    let name = header.name.to_ascii_lowercase();
    if name == "x-wsse" {
        header.value = rewrite_wsse(&header.value, names, counts);
    } else if name == "authorization" && !header.value.starts_with("WSSE") {
        header.value = super::rtsp::fill_credentials(header.value.as_bytes())
            .into_iter()
            .map(char::from)
            .collect();
        counts.add("Authorization", 1);
    } else if SECRET_PARTS.iter().any(|p| name.contains(p)) && name != "authorization" {
        header.value = names.text("header", &header.value);
        counts.add("secret header", 1);
    }
    let (bytes, addresses) = names.text_ips(header.value.as_bytes())?;
    counts.add("address", addresses);
    header.value = String::from_utf8(bytes)
        .map_err(|_| RedactError::Unsafe("a header value is not UTF-8".into()))?;
    Ok(())
}

/// An `X-WSSE` value with the username, digest and nonce replaced, read by
/// the codec ([`WsseRanges::locate`]); one it cannot read is scrubbed by
/// pattern ([`scrub_wsse`]), and so is one that repeats a secret field
/// (the codec reads the last of them; the others must not stay).
fn rewrite_wsse(value: &str, names: &mut Names, counts: &mut Counts) -> String {
    let repeated = WSSE_SECRETS
        .iter()
        .any(|field| value.matches(&format!("{field}=\"")).count() > 1);
    let Some(at) = WsseRanges::locate(value).ok().filter(|_| !repeated) else {
        return scrub_wsse(value, names, counts);
    };
    let mut secrets = [
        (at.username, "username"),
        (at.password_digest, "WSSE digest"),
        (at.nonce, "nonce"),
    ];
    // From the back, so a replacement of another length moves nothing
    // still to be replaced.
    secrets.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    let mut out = value.to_owned();
    for (range, kind) in secrets {
        let original = value.get(range.clone()).unwrap_or_default();
        let replacement = if kind == "username" {
            names.text_swept(kind, original)
        } else {
            names.text("wsse", original)
        };
        counts.add(kind, 1);
        out.replace_range(range, &replacement);
    }
    out
}

/// `Name="value"` pairs of WSSE text with the secret values replaced,
/// wherever they are: for a datagram the codec refused.
fn scrub_wsse(value: &str, names: &mut Names, counts: &mut Counts) -> String {
    let mut out = value.to_owned();
    for field in WSSE_SECRETS {
        let pattern = format!("{field}=\"");
        let mut from = 0;
        while let Some(found) = out[from..].find(&pattern) {
            let start = from + found + pattern.len();
            let Some(len) = out[start..].find('"') else {
                // Unterminated: fill to the end rather than keep it.
                let filled = "x".repeat(out.len() - start);
                out.replace_range(start.., &filled);
                break;
            };
            let original = out[start..start + len].to_owned();
            let replacement = if field == "Username" {
                counts.add("username", 1);
                names.text_swept("username", &original)
            } else {
                counts.add(
                    if field == "Nonce" {
                        "nonce"
                    } else {
                        "WSSE digest"
                    },
                    1,
                );
                names.text("wsse", &original)
            };
            out.replace_range(start..start + len, &replacement);
            from = start + len + 1;
        }
    }
    out
}

fn rewrite_body(
    body: &[u8],
    names: &mut Names,
    counts: &mut Counts,
) -> Result<Vec<u8>, RedactError> {
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let xml = match XmlBody::parse_at(body, 0) {
        Ok(xml) if XmlBody::from_elements(xml.elements().to_vec()).as_str() == xml.as_str() => xml,
        // XML the codec refuses, or not in the canonical form every client
        // writes: nothing in it can be trusted to be harmless, so every text
        // and attribute value is replaced.
        _ if body.contains(&b'<') => return scrub_markup(body, names, counts),
        // Not XML: only addresses can be recognised in it.
        _ => {
            let (bytes, addresses) = names.text_ips(body)?;
            counts.add("address", addresses);
            return Ok(bytes);
        }
    };
    let mut elements = Vec::with_capacity(xml.elements().len());
    for element in xml.elements() {
        elements.push(rewrite_element(element, names, counts)?);
    }
    Ok(XmlBody::from_elements(elements).to_bytes())
}

fn rewrite_element(
    element: &XmlElement,
    names: &mut Names,
    counts: &mut Counts,
) -> Result<XmlElement, RedactError> {
    let mut element = element.clone();
    if element.nested {
        let lower = element.text.to_ascii_lowercase();
        if SECRET_PARTS.iter().any(|p| lower.contains(p)) || lower.contains("nonce") {
            return Err(RedactError::Unsafe(format!(
                "element <{}> nests elements that may hold secrets",
                element.name
            )));
        }
    } else if let Some(kind) = element_kind(&element.name) {
        // LocalAddr is an address in clear unless IpEncrpt is on; then it
        // is an encrypted blob and counts as one.
        element.text = if kind == "serial" || kind == "token" || kind == "username" {
            names.text_swept(kind, &element.text)
        } else {
            names.text(kind, &element.text)
        };
        counts.add(kind, 1);
        return Ok(element);
    } else if element.name.eq_ignore_ascii_case("LocalAddr") && ipv4_free(&element.text) {
        element.text = names.text("LocalAddr blob", &element.text);
        counts.add("encrypted LocalAddr", 1);
        return Ok(element);
    } else if element.name.to_ascii_lowercase().contains("version") {
        return Ok(element);
    }
    let (bytes, addresses) = names.text_ips(element.text.as_bytes())?;
    counts.add("address", addresses);
    element.text = String::from_utf8(bytes)
        .map_err(|_| RedactError::Unsafe("an XML element is not UTF-8".into()))?;
    Ok(element)
}

fn ipv4_free(text: &str) -> bool {
    super::names::ipv4_spans(text.as_bytes()).is_empty() && !text.is_empty()
}

/// Markup that cannot be read element by element: tags stay, every text
/// between them and every quoted attribute value becomes a pseudonym (an
/// address its stand-in). Lengths may change only through addresses.
fn scrub_markup(
    body: &[u8],
    names: &mut Names,
    counts: &mut Counts,
) -> Result<Vec<u8>, RedactError> {
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while !rest.is_empty() {
        let (run, in_tag) = if rest[0] == b'<' {
            let end = rest
                .iter()
                .position(|b| *b == b'>')
                .map_or(rest.len(), |at| at + 1);
            (&rest[..end], true)
        } else {
            let end = rest.iter().position(|b| *b == b'<').unwrap_or(rest.len());
            (&rest[..end], false)
        };
        rest = &rest[run.len()..];
        if in_tag {
            let mut tag = run.to_vec();
            let mut quoted = false;
            for byte in tag.iter_mut() {
                match *byte {
                    b'"' | b'\'' => quoted = !quoted,
                    _ if quoted => *byte = b'x',
                    _ => {}
                }
            }
            out.extend_from_slice(&tag);
        } else if !super::names::ipv4_spans(run).is_empty() {
            let (bytes, addresses) = names.text_ips(run)?;
            counts.add("address", addresses);
            out.extend_from_slice(&bytes);
        } else if run.iter().any(|b| !b.is_ascii_whitespace()) {
            let text = String::from_utf8_lossy(run);
            out.extend_from_slice(names.text("markup", &text).as_bytes());
            counts.add("unreadable XML text", 1);
        } else {
            out.extend_from_slice(run);
        }
    }
    Ok(out)
}

/// A cloud datagram the codec refused: the path's serial or token, WSSE
/// values and addresses are replaced in the raw text, and any markup is
/// scrubbed whole ([`scrub_markup`]).
pub(super) fn rewrite_malformed(
    payload: &[u8],
    names: &mut Names,
    counts: &mut Counts,
) -> Result<Vec<u8>, RedactError> {
    let Ok(text) = std::str::from_utf8(payload) else {
        // Not UTF-8: addresses only, in place; then the literal sweep.
        let mut out = payload.to_vec();
        counts.add("address", names.text_ips_in_place(&mut out)?);
        return Ok(out);
    };
    counts.add("malformed cloud scrubbed", 1);
    let (head, markup) = text.split_at(text.find('<').unwrap_or(text.len()));
    let (first, rest) = head.split_at(head.find("\r\n").unwrap_or(head.len()));
    let mut out = String::new();
    let parts: Vec<&str> = first.splitn(3, ' ').collect();
    if let [method, path, version] = parts[..] {
        out.push_str(method);
        out.push(' ');
        out.push_str(&rewrite_path(path, names, counts)?);
        out.push(' ');
        out.push_str(version);
    } else {
        out.push_str(first);
    }
    out.push_str(&scrub_wsse(rest, names, counts));
    let (mut bytes, addresses) = names.text_ips(out.as_bytes())?;
    counts.add("address", addresses);
    bytes.extend_from_slice(&scrub_markup(markup.as_bytes(), names, counts)?);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wsse_secrets_are_replaced_and_created_kept() {
        let mut names = Names::new([7; 32]);
        let mut counts = Counts::default();
        let value = "UsernameToken Username=\"P2PClient\", PasswordDigest=\"c2VjcmV0ZGlnZXN0\", \
                     Nonce=\"1234567890\", Created=\"2024-01-01T00:00:00Z\"";
        let out = rewrite_wsse(value, &mut names, &mut counts);
        for secret in ["P2PClient", "c2VjcmV0ZGlnZXN0", "1234567890"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("Created=\"2024-01-01T00:00:00Z\""), "{out}");
        assert_eq!(counts.0.get("username"), Some(&1));

        // A repeated field: the codec reads only the last, so every copy is
        // scrubbed by pattern.
        let twice = "UsernameToken Username=\"first_user\", Username=\"second_user\", \
                     PasswordDigest=\"d\", Nonce=\"n\", Created=\"c\"";
        let out = rewrite_wsse(twice, &mut names, &mut counts);
        assert!(
            !out.contains("first_user") && !out.contains("second_user"),
            "{out}"
        );
    }
}
