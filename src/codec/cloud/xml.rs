//! The XML body of a cloud message: root `<body>`, its children in order.
//!
//! Only one level matters to the protocol (`body/US`, `body/LocalAddr`…), so a
//! child that has elements inside is kept as its raw inner text rather than
//! parsed recursively. The parser is quick-xml's pull reader (no recursion),
//! with caps on depth and element count so hostile input costs little.

use std::borrow::Cow;
use std::ops::Range;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::CloudError;

/// Deepest nesting accepted, `<body>` included.
pub const MAX_XML_DEPTH: usize = 32;

/// Most elements accepted below `<body>`, nested ones included.
pub const MAX_XML_ELEMENTS: usize = 256;

/// One child of `<body>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct XmlElement {
    /// Element name, case-sensitive (`agentAddr`, `IpEncrpt`).
    pub name: String,
    /// The text with entities resolved; for a `nested` element, the raw
    /// inner XML instead.
    pub text: String,
    /// Whether the element has elements inside it.
    pub nested: bool,
}

impl XmlElement {
    /// An element holding plain text (escaped when written).
    pub fn leaf(name: impl Into<String>, text: impl Into<String>) -> XmlElement {
        XmlElement {
            name: name.into(),
            text: text.into(),
            nested: false,
        }
    }

    /// An element holding raw inner XML, written as is.
    pub fn nested(name: impl Into<String>, inner_xml: impl Into<String>) -> XmlElement {
        XmlElement {
            name: name.into(),
            text: inner_xml.into(),
            nested: true,
        }
    }
}

/// Where a child of `<body>` sits in the body text, as the XML reader saw
/// it: `outer` from `<name` to the end of its end tag, `inner` its content.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ElementSpan {
    pub outer: Range<usize>,
    pub inner: Range<usize>,
}

/// A parsed body: the exact text it came from and its children in order.
///
/// The element list is the source of truth for readers; the text is kept so
/// that writing the body back is exact, with each element's span in it. All
/// are fixed at construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct XmlBody {
    text: String,
    elements: Vec<XmlElement>,
    spans: Vec<ElementSpan>,
}

impl XmlBody {
    /// Writes `elements` the way every client does: `<body>`, each child, no
    /// whitespace, no declaration, text escaped (`<`, `>`, `&`).
    pub fn from_elements(elements: Vec<XmlElement>) -> XmlBody {
        let mut text = String::from("<body>");
        let mut spans = Vec::with_capacity(elements.len());
        for element in &elements {
            let outer_start = text.len();
            text.push('<');
            text.push_str(&element.name);
            text.push('>');
            let inner_start = text.len();
            if element.nested {
                text.push_str(&element.text);
            } else {
                text.push_str(&quick_xml::escape::partial_escape(&element.text));
            }
            let inner_end = text.len();
            text.push_str("</");
            text.push_str(&element.name);
            text.push('>');
            spans.push(ElementSpan {
                outer: outer_start..text.len(),
                inner: inner_start..inner_end,
            });
        }
        text.push_str("</body>");
        XmlBody {
            text,
            elements,
            spans,
        }
    }

    /// [`XmlBody::from_elements`] for leaf elements given as (name, text).
    pub fn from_pairs<N: AsRef<str>, T: AsRef<str>>(pairs: &[(N, T)]) -> XmlBody {
        XmlBody::from_elements(
            pairs
                .iter()
                .map(|(n, t)| XmlElement::leaf(n.as_ref(), t.as_ref()))
                .collect(),
        )
    }

    /// Parses a body given as text. Offsets in errors count from its start.
    pub fn parse(text: &str) -> Result<XmlBody, CloudError> {
        parse_text(text, 0)
    }

    /// Parses a body given as bytes that start at `base` in the datagram.
    pub fn parse_at(bytes: &[u8], base: usize) -> Result<XmlBody, CloudError> {
        let text = std::str::from_utf8(bytes).map_err(|e| CloudError::NonUtf8Body {
            offset: base.saturating_add(e.valid_up_to()),
        })?;
        parse_text(text, base)
    }

    /// The children of `<body>` in order, unknown ones included.
    pub fn elements(&self) -> &[XmlElement] {
        &self.elements
    }

    /// Where each element of [`XmlBody::elements`] sits in the text (same
    /// order), from the reader's positions.
    pub fn spans(&self) -> &[ElementSpan] {
        &self.spans
    }

    /// The text of the first child named `name` (case-sensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.elements
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.text.as_str())
    }

    /// Like [`XmlBody::get`], with an error naming the missing element.
    pub fn require(&self, name: &str) -> Result<&str, CloudError> {
        self.get(name).ok_or_else(|| CloudError::MissingElement {
            name: name.to_owned(),
        })
    }

    /// The exact text, as parsed or as written by `from_elements`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The exact bytes, ready to be a message body.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.text.as_bytes().to_vec()
    }
}

/// A child of `<body>` whose end tag has not been seen yet.
struct OpenChild {
    name: String,
    outer_start: usize,
    inner_start: usize,
    text: String,
    nested: bool,
}

fn to_usize(pos: u64) -> usize {
    usize::try_from(pos).unwrap_or(usize::MAX)
}

fn element_name(start: &BytesStart<'_>, offset: usize) -> Result<String, CloudError> {
    let name = std::str::from_utf8(start.name().into_inner()).map_err(|_| CloudError::Xml {
        offset,
        message: "element name is not UTF-8".to_owned(),
    })?;
    // Reject garbage inside tags (`<a b>`) even though attributes are unused.
    for attribute in start.attributes() {
        attribute.map_err(|e| CloudError::Xml {
            offset,
            message: format!("bad attribute: {e}"),
        })?;
    }
    Ok(name.to_owned())
}

/// The root must be the only top-level element and be named `body`.
fn check_root(start: &BytesStart<'_>, at: usize, seen_root: bool) -> Result<(), CloudError> {
    let name = element_name(start, at)?;
    if seen_root {
        return Err(CloudError::Xml {
            offset: at,
            message: "a second root element".to_owned(),
        });
    }
    if name != "body" {
        return Err(CloudError::XmlRoot {
            offset: at,
            found: name,
        });
    }
    Ok(())
}

/// Counts one more element below `<body>`, failing past the cap.
fn count_element(count: &mut usize, at: usize) -> Result<(), CloudError> {
    *count = count.saturating_add(1);
    if *count > MAX_XML_ELEMENTS {
        return Err(CloudError::TooManyXmlElements {
            offset: at,
            max: MAX_XML_ELEMENTS,
        });
    }
    Ok(())
}

fn parse_text(text: &str, base: usize) -> Result<XmlBody, CloudError> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let xml_error = |offset: usize, message: String| CloudError::Xml {
        offset: base.saturating_add(offset),
        message,
    };

    let mut depth = 0usize;
    let mut seen_root = false;
    let mut element_count = 0usize;
    let mut open: Option<OpenChild> = None;
    let mut elements = Vec::new();
    let mut spans = Vec::new();

    loop {
        let before = to_usize(reader.buffer_position());
        let event = reader
            .read_event()
            .map_err(|e| xml_error(to_usize(reader.error_position()), e.to_string()))?;
        let at = base.saturating_add(before);
        let after = to_usize(reader.buffer_position());
        match event {
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::DocType(_) => {
                return Err(xml_error(before, "DOCTYPE is not allowed".to_owned()))
            }
            Event::Start(start) if depth == 0 => {
                check_root(&start, at, seen_root)?;
                seen_root = true;
                depth = 1;
            }
            Event::Empty(start) if depth == 0 => {
                check_root(&start, at, seen_root)?;
                seen_root = true;
            }
            Event::Start(start) => {
                let name = element_name(&start, at)?;
                count_element(&mut element_count, at)?;
                depth = depth.saturating_add(1);
                if depth > MAX_XML_DEPTH {
                    return Err(CloudError::XmlTooDeep {
                        offset: at,
                        max: MAX_XML_DEPTH,
                    });
                }
                match open.as_mut() {
                    None => {
                        open = Some(OpenChild {
                            name,
                            outer_start: before,
                            inner_start: after,
                            text: String::new(),
                            nested: false,
                        })
                    }
                    Some(child) => child.nested = true,
                }
            }
            Event::Empty(start) => {
                let name = element_name(&start, at)?;
                count_element(&mut element_count, at)?;
                match open.as_mut() {
                    None => {
                        elements.push(XmlElement::leaf(name, ""));
                        spans.push(ElementSpan {
                            outer: before..after,
                            inner: after..after,
                        });
                    }
                    Some(child) => child.nested = true,
                }
            }
            Event::End(_) => {
                // quick-xml has already checked the name against the open tag.
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    if let Some(child) = open.take() {
                        let inner = text.get(child.inner_start..before).unwrap_or_default();
                        elements.push(XmlElement {
                            name: child.name,
                            text: if child.nested {
                                inner.to_owned()
                            } else {
                                child.text
                            },
                            nested: child.nested,
                        });
                        spans.push(ElementSpan {
                            outer: child.outer_start..after,
                            inner: child.inner_start..before,
                        });
                    }
                }
            }
            Event::Text(t) => {
                let resolved: Cow<'_, str> =
                    t.unescape().map_err(|e| xml_error(before, e.to_string()))?;
                if depth <= 1 {
                    if !resolved.trim().is_empty() {
                        let place = if depth == 0 {
                            "outside"
                        } else {
                            "directly inside"
                        };
                        return Err(xml_error(before, format!("text {place} <body>")));
                    }
                } else if let Some(child) = open.as_mut() {
                    if !child.nested {
                        child.text.push_str(&resolved);
                    }
                }
            }
            Event::CData(c) => {
                if depth <= 1 {
                    return Err(xml_error(before, "CDATA outside an element".to_owned()));
                }
                let data = std::str::from_utf8(c.as_ref())
                    .map_err(|_| xml_error(before, "CDATA is not UTF-8".to_owned()))?;
                if let Some(child) = open.as_mut() {
                    if !child.nested {
                        child.text.push_str(data);
                    }
                }
            }
        }
    }
    if !seen_root {
        return Err(CloudError::XmlRoot {
            offset: base,
            found: String::new(),
        });
    }
    if depth != 0 {
        return Err(xml_error(text.len(), "element not closed".to_owned()));
    }
    Ok(XmlBody {
        text: text.to_owned(),
        elements,
        spans,
    })
}
