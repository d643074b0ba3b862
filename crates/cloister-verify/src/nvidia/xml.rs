//! A small, strict XML start-tag reader for NVIDIA RIMs (SWID tags): elements, attributes and
//! namespaces, nothing else.
//!
//! RIM appraisal only needs the attributes of a few elements (`Meta`, `Payload/Resource`), so
//! this reader walks the document's tags, resolves namespace prefixes and decodes the five
//! predefined entities and character references in attribute values. Text content is skipped.
//! Document type declarations are refused (no entity expansion), as is anything not
//! well-formed at the tag level: unbalanced or mismatched end tags, unquoted or repeated
//! attributes, unknown entities, unterminated comments. It never canonicalises, so it cannot be
//! used to check an XML signature.

/// One element's start tag, with names resolved to namespace URIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    /// The namespace URI of the element ("" when none).
    pub(crate) namespace: String,
    /// The local name.
    pub(crate) name: String,
    /// The local names of the enclosing elements, outermost first.
    pub(crate) path: Vec<String>,
    /// Attributes other than namespace declarations: (namespace URI or "", local name, value).
    pub(crate) attributes: Vec<(String, String, String)>,
}

impl Element {
    /// The value of the attribute with this namespace and local name.
    pub(crate) fn attribute(&self, namespace: &str, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(ns, local, _)| ns == namespace && local == name)
            .map(|(_, _, value)| value.as_str())
    }
}

/// The deepest element nesting accepted.
const MAX_DEPTH: usize = 64;

struct Frame {
    qname: String,
    local: String,
    declarations: Vec<(String, String)>,
}

/// Reads every element of `text`, in document order. The error says what is malformed.
pub(crate) fn elements(text: &str) -> Result<Vec<Element>, String> {
    let mut out = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut rest = text;
    let mut seen_root = false;
    while let Some(start) = rest.find('<') {
        let before = rest.get(..start).unwrap_or_default();
        if stack.is_empty() && !before.trim().is_empty() {
            return Err("text outside the root element".into());
        }
        rest = rest.get(start..).unwrap_or_default();
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->").ok_or("unterminated comment")?;
            rest = after.get(end + 3..).unwrap_or_default();
        } else if let Some(after) = rest.strip_prefix("<?") {
            let end = after.find("?>").ok_or("unterminated processing instruction")?;
            rest = after.get(end + 2..).unwrap_or_default();
        } else if let Some(after) = rest.strip_prefix("<![CDATA[") {
            if stack.is_empty() {
                return Err("CDATA outside the root element".into());
            }
            let end = after.find("]]>").ok_or("unterminated CDATA section")?;
            rest = after.get(end + 3..).unwrap_or_default();
        } else if rest.starts_with("<!") {
            return Err("document type declarations are not accepted".into());
        } else if let Some(after) = rest.strip_prefix("</") {
            let end = after.find('>').ok_or("unterminated end tag")?;
            let name = after.get(..end).unwrap_or_default().trim_end();
            let frame = stack.pop().ok_or("end tag without a start tag")?;
            if frame.qname != name {
                return Err(format!("end tag </{name}> closes <{}>", frame.qname));
            }
            rest = after.get(end + 1..).unwrap_or_default();
        } else {
            if stack.is_empty() && seen_root {
                return Err("more than one root element".into());
            }
            seen_root = true;
            let (tag, self_closing, after) = start_tag(rest.get(1..).unwrap_or_default())?;
            rest = after;
            let mut declarations = Vec::new();
            let mut raw_attributes = Vec::new();
            for (qname, value) in tag.attributes {
                if qname == "xmlns" {
                    declarations.push((String::new(), value));
                } else if let Some(prefix) = qname.strip_prefix("xmlns:") {
                    declarations.push((prefix.to_owned(), value));
                } else {
                    raw_attributes.push((qname, value));
                }
            }
            let frame = Frame { qname: tag.name.clone(), local: String::new(), declarations };
            stack.push(frame);
            let (prefix, local) = split_qname(&tag.name);
            let namespace = resolve(&stack, prefix, true)?;
            let mut attributes = Vec::new();
            for (qname, value) in raw_attributes {
                let (prefix, local) = split_qname(&qname);
                let namespace = resolve(&stack, prefix, false)?;
                if attributes.iter().any(|(n, l, _)| n == &namespace && l == local) {
                    return Err(format!("attribute {qname} appears twice"));
                }
                attributes.push((namespace, local.to_owned(), value));
            }
            let path =
                stack.iter().take(stack.len().saturating_sub(1)).map(|f| f.local.clone()).collect();
            if let Some(top) = stack.last_mut() {
                top.local = local.to_owned();
            }
            out.push(Element { namespace, name: local.to_owned(), path, attributes });
            if self_closing {
                stack.pop();
            } else if stack.len() > MAX_DEPTH {
                return Err("elements nested too deeply".into());
            }
        }
    }
    if !stack.is_empty() {
        return Err("the document ends inside an element".into());
    }
    if !rest.trim().is_empty() {
        return Err("text outside the root element".into());
    }
    if !seen_root {
        return Err("no root element".into());
    }
    Ok(out)
}

struct StartTag {
    name: String,
    attributes: Vec<(String, String)>,
}

/// Parses a start tag after its `<`; returns the tag, whether it is self-closing, and the text
/// after its `>`.
fn start_tag(text: &str) -> Result<(StartTag, bool, &str), String> {
    let name_end = text
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .ok_or("unterminated start tag")?;
    let name = text.get(..name_end).unwrap_or_default();
    check_name(name)?;
    let mut rest = text.get(name_end..).unwrap_or_default();
    let mut attributes = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("/>") {
            return Ok((StartTag { name: name.to_owned(), attributes }, true, after));
        }
        if let Some(after) = rest.strip_prefix('>') {
            return Ok((StartTag { name: name.to_owned(), attributes }, false, after));
        }
        let eq = rest.find('=').ok_or_else(|| format!("malformed attribute in <{name}>"))?;
        let attr = rest.get(..eq).unwrap_or_default().trim_end();
        check_name(attr)?;
        rest = rest.get(eq + 1..).unwrap_or_default().trim_start();
        let quote = rest.chars().next().ok_or("unterminated start tag")?;
        if quote != '"' && quote != '\'' {
            return Err(format!("attribute {attr} in <{name}> is not quoted"));
        }
        let body = rest.get(1..).unwrap_or_default();
        let close = body.find(quote).ok_or_else(|| format!("attribute {attr} is not closed"))?;
        let raw = body.get(..close).unwrap_or_default();
        if raw.contains('<') {
            return Err(format!("attribute {attr} contains '<'"));
        }
        if attributes.iter().any(|(a, _)| a == attr) {
            return Err(format!("attribute {attr} appears twice in <{name}>"));
        }
        attributes.push((attr.to_owned(), decode_entities(raw)?));
        rest = body.get(close + 1..).unwrap_or_default();
        if !(rest.starts_with(char::is_whitespace)
            || rest.starts_with('>')
            || rest.starts_with('/'))
        {
            return Err(format!("no space after attribute {attr} in <{name}>"));
        }
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, ':' | '_' | '-' | '.'))
        && !name.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.')
        && name.matches(':').count() <= 1;
    if valid { Ok(()) } else { Err(format!("invalid XML name {name:?}")) }
}

fn split_qname(qname: &str) -> (&str, &str) {
    match qname.split_once(':') {
        Some((prefix, local)) => (prefix, local),
        None => ("", qname),
    }
}

/// The namespace URI of `prefix` in scope; unprefixed attributes have none.
fn resolve(stack: &[Frame], prefix: &str, is_element: bool) -> Result<String, String> {
    if prefix.is_empty() && !is_element {
        return Ok(String::new());
    }
    if prefix == "xml" {
        return Ok("http://www.w3.org/XML/1998/namespace".into());
    }
    for frame in stack.iter().rev() {
        if let Some((_, uri)) = frame.declarations.iter().find(|(p, _)| p == prefix) {
            return Ok(uri.clone());
        }
    }
    if prefix.is_empty() { Ok(String::new()) } else { Err(format!("undeclared prefix {prefix}")) }
}

fn decode_entities(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or_default());
        let after = rest.get(amp + 1..).unwrap_or_default();
        let semi = after.find(';').ok_or("unterminated entity reference")?;
        let entity = after.get(..semi).unwrap_or_default();
        let c = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse::<u32>().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity reference &{entity};"))?
            }
        };
        out.push(c);
        rest = after.get(semi + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_namespaced_attributes_and_paths() {
        let doc = r#"<?xml version="1.0"?><!-- c --><a xmlns="urn:a" xmlns:h="urn:h">
            <b><c h:x="1 &amp; 2" y='&#x41;'/></b></a>"#;
        let els = elements(doc).unwrap();
        assert_eq!(els.len(), 3);
        let c = &els[2];
        assert_eq!((c.namespace.as_str(), c.name.as_str()), ("urn:a", "c"));
        assert_eq!(c.path, ["a", "b"]);
        assert_eq!(c.attribute("urn:h", "x"), Some("1 & 2"));
        assert_eq!(c.attribute("", "y"), Some("A"));
    }

    #[test]
    fn refuses_malformed_documents() {
        for doc in [
            "<a><b></a>",
            "<a>",
            "<a x=1/>",
            "<a x='1' x='2'/>",
            "<!DOCTYPE a><a/>",
            "<a/><b/>",
            "<p:a/>",
            "<a x='&foo;'/>",
            "<a><!-- </a>",
            "",
        ] {
            assert!(elements(doc).is_err(), "{doc}");
        }
    }
}
