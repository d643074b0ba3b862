//! A small, strict XML reader for NVIDIA RIMs (SWID tags): a tree of elements, attributes,
//! namespace declarations, text, comments and processing instructions, enough to canonicalise.
//!
//! It keeps what canonical XML needs and a generic reader would lose: each element's and
//! attribute's prefix as written, the namespace declarations an element carries, and text exactly
//! as the XML data model has it (line ends normalised to `\n`, CDATA sections as their text,
//! character and predefined entity references decoded, attribute values normalised). Document type
//! declarations are refused (no entity expansion, no defaulted attributes, no DTD-declared IDs), as
//! is anything not well-formed: mismatched end tags, unquoted or repeated attributes (also after
//! namespace resolution), unknown entities, undeclared prefixes, characters XML does not allow,
//! and an encoding other than UTF-8.

/// An index into [`Document::nodes`].
pub(crate) type NodeId = usize;

/// A parsed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Document {
    /// Every node, in document order.
    pub(crate) nodes: Vec<Node>,
    /// The document's children in order: the root element, and comments and processing
    /// instructions before and after it.
    pub(crate) children: Vec<NodeId>,
    /// The root (document) element.
    pub(crate) root: NodeId,
}

/// One node and its parent element (`None` for children of the document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// What the node is.
    pub(crate) kind: NodeKind,
    /// The parent element.
    pub(crate) parent: Option<NodeId>,
}

/// The kinds of node the XPath data model has (namespace and attribute nodes live on elements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeKind {
    /// An element.
    Element(Element),
    /// Character data (adjacent text and CDATA merged).
    Text(String),
    /// A comment's text.
    Comment(String),
    /// A processing instruction.
    Pi {
        /// Its target.
        target: String,
        /// Its data ("" when none).
        data: String,
    },
}

/// An element with its names resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    /// The prefix as written ("" when none).
    pub(crate) prefix: String,
    /// The local name.
    pub(crate) local: String,
    /// The namespace URI ("" when none).
    pub(crate) namespace: String,
    /// Attributes other than namespace declarations, in the order written.
    pub(crate) attributes: Vec<Attribute>,
    /// The namespace declarations on this element: (prefix, or "" for the default; URI, "" for
    /// an undeclared default).
    pub(crate) declarations: Vec<(String, String)>,
    /// Child nodes in order.
    pub(crate) children: Vec<NodeId>,
}

/// An attribute with its name resolved and its value normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attribute {
    /// The prefix as written ("" when none).
    pub(crate) prefix: String,
    /// The local name.
    pub(crate) local: String,
    /// The namespace URI ("" for an unprefixed attribute).
    pub(crate) namespace: String,
    /// The normalised value.
    pub(crate) value: String,
}

impl Element {
    /// The value of the attribute with this namespace and local name.
    pub(crate) fn attribute(&self, namespace: &str, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.namespace == namespace && a.local == name)
            .map(|a| a.value.as_str())
    }

    /// Whether this is `{namespace}local`.
    pub(crate) fn is(&self, namespace: &str, local: &str) -> bool {
        self.namespace == namespace && self.local == local
    }
}

/// The XML namespace, bound to `xml` in every document.
pub(crate) const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
/// The namespace of namespace declarations.
const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";
/// The deepest element nesting accepted.
const MAX_DEPTH: usize = 64;

impl Document {
    /// The element at `id`, if it is one.
    pub(crate) fn element(&self, id: NodeId) -> Option<&Element> {
        match &self.nodes.get(id)?.kind {
            NodeKind::Element(e) => Some(e),
            _ => None,
        }
    }

    /// The root element.
    pub(crate) fn root_element(&self) -> &Element {
        // `parse` only returns documents whose root is an element.
        self.element(self.root).unwrap_or_else(|| unreachable!("the root is an element"))
    }

    /// The child elements of `id`, in order.
    pub(crate) fn child_elements(&self, id: NodeId) -> impl Iterator<Item = (NodeId, &Element)> {
        self.element(id)
            .map(|e| e.children.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|&c| self.element(c).map(|e| (c, e)))
    }

    /// Every element in document order.
    pub(crate) fn elements(&self) -> impl Iterator<Item = (NodeId, &Element)> {
        (0..self.nodes.len()).filter_map(|id| self.element(id).map(|e| (id, e)))
    }

    /// The concatenated text children of `id` (not of its descendants).
    pub(crate) fn text(&self, id: NodeId) -> String {
        let mut out = String::new();
        for &c in self.element(id).map(|e| e.children.as_slice()).unwrap_or_default() {
            if let Some(Node { kind: NodeKind::Text(t), .. }) = self.nodes.get(c) {
                out.push_str(t);
            }
        }
        out
    }

    /// The namespaces in scope at element `id`: (prefix, URI), the default as "", without the
    /// implicit `xml` binding and without an undeclared default.
    pub(crate) fn in_scope_namespaces(&self, id: NodeId) -> Vec<(String, String)> {
        let mut scope: Vec<(String, String)> = Vec::new();
        let mut current = Some(id);
        while let Some(at) = current {
            if let Some(e) = self.element(at) {
                for (prefix, uri) in &e.declarations {
                    if !scope.iter().any(|(p, _)| p == prefix) {
                        scope.push((prefix.clone(), uri.clone()));
                    }
                }
            }
            current = self.nodes.get(at).and_then(|n| n.parent);
        }
        scope.retain(|(_, uri)| !uri.is_empty());
        scope.sort();
        scope
    }
}

/// Parses a whole document. The error says what is malformed.
pub(crate) fn parse(text: &str) -> Result<Document, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // XML 1.0 §2.11: every CR LF pair and lone CR reads as LF.
    let normalised = text.replace("\r\n", "\n").replace('\r', "\n");
    if let Some(c) = normalised.chars().find(|&c| !is_xml_char(c)) {
        return Err(format!("character U+{:04X} is not allowed in XML", u32::from(c)));
    }
    Parser { nodes: Vec::new(), stack: Vec::new(), children: Vec::new(), root: None }
        .run(&normalised)
}

struct Frame {
    id: NodeId,
    qname: String,
}

struct Parser {
    nodes: Vec<Node>,
    stack: Vec<Frame>,
    children: Vec<NodeId>,
    root: Option<NodeId>,
}

impl Parser {
    fn run(mut self, text: &str) -> Result<Document, String> {
        let mut rest = skip_declaration(text)?;
        while !rest.is_empty() {
            let Some(start) = rest.find('<') else {
                self.text(rest)?;
                break;
            };
            self.text(rest.get(..start).unwrap_or_default())?;
            rest = rest.get(start..).unwrap_or_default();
            if let Some(after) = rest.strip_prefix("<!--") {
                let end = after.find("--").ok_or("unterminated comment")?;
                if !after.get(end..).unwrap_or_default().starts_with("-->") {
                    return Err("a comment contains \"--\"".into());
                }
                self.push(NodeKind::Comment(after.get(..end).unwrap_or_default().to_owned()));
                rest = after.get(end + 3..).unwrap_or_default();
            } else if let Some(after) = rest.strip_prefix("<?") {
                let end = after.find("?>").ok_or("unterminated processing instruction")?;
                let body = after.get(..end).unwrap_or_default();
                let (target, data) = match body.find(is_space) {
                    Some(i) => (
                        body.get(..i).unwrap_or_default(),
                        body.get(i..).unwrap_or_default().trim_start_matches(is_space),
                    ),
                    None => (body, ""),
                };
                check_name(target)?;
                if target.eq_ignore_ascii_case("xml") {
                    return Err("an XML declaration is allowed only at the start".into());
                }
                if target.contains(':') {
                    return Err(format!("processing instruction target {target:?} has a colon"));
                }
                self.push(NodeKind::Pi { target: target.to_owned(), data: data.to_owned() });
                rest = after.get(end + 2..).unwrap_or_default();
            } else if let Some(after) = rest.strip_prefix("<![CDATA[") {
                if self.stack.is_empty() {
                    return Err("CDATA outside the root element".into());
                }
                let end = after.find("]]>").ok_or("unterminated CDATA section")?;
                self.push_text(after.get(..end).unwrap_or_default());
                rest = after.get(end + 3..).unwrap_or_default();
            } else if rest.starts_with("<!") {
                return Err("document type declarations are not accepted".into());
            } else if let Some(after) = rest.strip_prefix("</") {
                let end = after.find('>').ok_or("unterminated end tag")?;
                let name = after.get(..end).unwrap_or_default().trim_end_matches(is_space);
                let frame = self.stack.pop().ok_or("end tag without a start tag")?;
                if frame.qname != name {
                    return Err(format!("end tag </{name}> closes <{}>", frame.qname));
                }
                rest = after.get(end + 1..).unwrap_or_default();
            } else {
                rest = self.start_tag(rest.get(1..).unwrap_or_default())?;
            }
        }
        if !self.stack.is_empty() {
            return Err("the document ends inside an element".into());
        }
        let root = self.root.ok_or("no root element")?;
        Ok(Document { nodes: self.nodes, children: self.children, root })
    }

    /// Character data between markup: whitespace only outside the root element.
    fn text(&mut self, raw: &str) -> Result<(), String> {
        if raw.is_empty() {
            return Ok(());
        }
        if self.stack.is_empty() {
            if raw.chars().all(is_space) {
                return Ok(());
            }
            return Err("text outside the root element".into());
        }
        if raw.contains("]]>") {
            return Err("\"]]>\" in character data".into());
        }
        let decoded = decode_references(raw, false)?;
        self.push_text(&decoded);
        Ok(())
    }

    fn push_text(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let parent = self.stack.last().map(|f| f.id);
        let last_child = parent.and_then(|p| match self.nodes.get(p).map(|n| &n.kind) {
            Some(NodeKind::Element(e)) => e.children.last().copied(),
            _ => None,
        });
        if let Some(Node { kind: NodeKind::Text(t), .. }) =
            last_child.and_then(|c| self.nodes.get_mut(c))
        {
            t.push_str(text);
            return;
        }
        self.push(NodeKind::Text(text.to_owned()));
    }

    /// Adds a node under the current element (or the document) and returns its id.
    fn push(&mut self, kind: NodeKind) -> NodeId {
        let id = self.nodes.len();
        let parent = self.stack.last().map(|f| f.id);
        self.nodes.push(Node { kind, parent });
        match parent {
            Some(p) => {
                if let Some(Node { kind: NodeKind::Element(e), .. }) = self.nodes.get_mut(p) {
                    e.children.push(id);
                }
            }
            None => self.children.push(id),
        }
        id
    }

    /// Parses a start tag after its `<`; returns the text after its `>`.
    fn start_tag<'t>(&mut self, text: &'t str) -> Result<&'t str, String> {
        if self.stack.is_empty() && self.root.is_some() {
            return Err("more than one root element".into());
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err("elements nested too deeply".into());
        }
        let (qname, raw_attributes, self_closing, after) = read_start_tag(text)?;
        let mut declarations: Vec<(String, String)> = Vec::new();
        let mut plain = Vec::new();
        for (name, value) in raw_attributes {
            if name == "xmlns" {
                if value == XML_NS || value == XMLNS_NS {
                    return Err(format!("the default namespace cannot be {value}"));
                }
                declarations.push((String::new(), value));
            } else if let Some(prefix) = name.strip_prefix("xmlns:") {
                check_declaration(prefix, &value)?;
                declarations.push((prefix.to_owned(), value));
            } else {
                plain.push((name, value));
            }
        }
        let resolve = |prefix: &str, nodes: &[Node], stack: &[Frame]| -> Result<String, String> {
            if prefix == "xml" {
                return Ok(XML_NS.into());
            }
            if let Some((_, uri)) = declarations.iter().find(|(p, _)| p == prefix) {
                return Ok(uri.clone());
            }
            for frame in stack.iter().rev() {
                if let Some(Node { kind: NodeKind::Element(e), .. }) = nodes.get(frame.id)
                    && let Some((_, uri)) = e.declarations.iter().find(|(p, _)| p == prefix)
                {
                    return Ok(uri.clone());
                }
            }
            if prefix.is_empty() {
                Ok(String::new())
            } else {
                Err(format!("undeclared prefix {prefix}"))
            }
        };
        let (prefix, local) = split_qname(&qname)?;
        let namespace = resolve(prefix, &self.nodes, &self.stack)?;
        if !prefix.is_empty() && namespace.is_empty() {
            return Err(format!("prefix {prefix} is undeclared"));
        }
        let mut attributes: Vec<Attribute> = Vec::new();
        for (name, value) in plain {
            let (a_prefix, a_local) = split_qname(&name)?;
            let a_namespace = if a_prefix.is_empty() {
                String::new()
            } else {
                resolve(a_prefix, &self.nodes, &self.stack)?
            };
            if attributes.iter().any(|a| a.namespace == a_namespace && a.local == a_local) {
                return Err(format!("attribute {name} appears twice in <{qname}>"));
            }
            attributes.push(Attribute {
                prefix: a_prefix.to_owned(),
                local: a_local.to_owned(),
                namespace: a_namespace,
                value,
            });
        }
        let element = Element {
            prefix: prefix.to_owned(),
            local: local.to_owned(),
            namespace,
            attributes,
            declarations,
            children: Vec::new(),
        };
        let id = self.push(NodeKind::Element(element));
        if self.stack.is_empty() {
            self.root = Some(id);
        }
        if !self_closing {
            self.stack.push(Frame { id, qname });
        }
        Ok(after)
    }
}

/// Skips an XML declaration at the very start; only UTF-8 is accepted.
fn skip_declaration(text: &str) -> Result<&str, String> {
    let Some(after) = text.strip_prefix("<?xml") else { return Ok(text) };
    if !after.starts_with(is_space) {
        return Ok(text);
    }
    let end = after.find("?>").ok_or("unterminated XML declaration")?;
    let body = after.get(..end).unwrap_or_default();
    if let Some(at) = body.find("encoding") {
        let value = body
            .get(at + "encoding".len()..)
            .unwrap_or_default()
            .trim_start_matches(is_space)
            .strip_prefix('=')
            .unwrap_or_default()
            .trim_start_matches(is_space);
        let encoding = value.trim_start_matches(['"', '\'']);
        let encoding = encoding.get(..encoding.find(['"', '\'']).unwrap_or(0)).unwrap_or_default();
        if !encoding.eq_ignore_ascii_case("utf-8") {
            return Err(format!("encoding {encoding:?} is not accepted (only UTF-8)"));
        }
    }
    Ok(after.get(end + 2..).unwrap_or_default())
}

/// A start tag after its `<`: the name, the attributes (name, normalised value), whether it is
/// self-closing, and the text after its `>`.
type StartTag<'t> = (String, Vec<(String, String)>, bool, &'t str);

fn read_start_tag(text: &str) -> Result<StartTag<'_>, String> {
    let name_end =
        text.find(|c: char| is_space(c) || c == '>' || c == '/').ok_or("unterminated start tag")?;
    let name = text.get(..name_end).unwrap_or_default();
    check_name(name)?;
    let mut rest = text.get(name_end..).unwrap_or_default();
    let mut attributes: Vec<(String, String)> = Vec::new();
    loop {
        let trimmed = rest.trim_start_matches(is_space);
        let spaced = trimmed.len() != rest.len();
        rest = trimmed;
        if let Some(after) = rest.strip_prefix("/>") {
            return Ok((name.to_owned(), attributes, true, after));
        }
        if let Some(after) = rest.strip_prefix('>') {
            return Ok((name.to_owned(), attributes, false, after));
        }
        if !spaced {
            return Err(format!("no space before an attribute in <{name}>"));
        }
        let eq = rest.find('=').ok_or_else(|| format!("malformed attribute in <{name}>"))?;
        let attr = rest.get(..eq).unwrap_or_default().trim_end_matches(is_space);
        check_name(attr)?;
        rest = rest.get(eq + 1..).unwrap_or_default().trim_start_matches(is_space);
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
        attributes.push((attr.to_owned(), decode_references(raw, true)?));
        rest = body.get(close + 1..).unwrap_or_default();
    }
}

fn check_declaration(prefix: &str, uri: &str) -> Result<(), String> {
    if prefix == "xmlns" {
        return Err("the prefix xmlns cannot be declared".into());
    }
    if uri.is_empty() {
        return Err(format!("prefix {prefix} is declared with an empty namespace"));
    }
    if (prefix == "xml") != (uri == XML_NS) {
        return Err(format!("prefix {prefix} cannot be bound to {uri}"));
    }
    if uri == XMLNS_NS {
        return Err(format!("prefix {prefix} cannot be bound to {uri}"));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_alphanumeric() || matches!(c, ':' | '_' | '-' | '.'))
        && !name.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.');
    if valid { Ok(()) } else { Err(format!("invalid XML name {name:?}")) }
}

/// (prefix, local name); a name with an empty part or more than one colon is refused.
fn split_qname(qname: &str) -> Result<(&str, &str), String> {
    match qname.split_once(':') {
        Some((prefix, local))
            if !prefix.is_empty() && !local.is_empty() && !local.contains(':') =>
        {
            Ok((prefix, local))
        }
        Some(_) => Err(format!("invalid qualified name {qname:?}")),
        None => Ok(("", qname)),
    }
}

/// XML 1.0's white space.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// XML 1.0's `Char` production.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Decodes character and predefined entity references. In an attribute value (`attribute`),
/// literal white space becomes a space first (XML 1.0 §3.3.3, every attribute being CDATA
/// without a DTD); characters written as references stay as they are.
fn decode_references(raw: &str, attribute: bool) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '&' => {
                let after = raw.get(at + 1..).unwrap_or_default();
                let semi = after.find(';').ok_or("unterminated entity reference")?;
                let entity = after.get(..semi).unwrap_or_default();
                let decoded = match entity {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    "apos" => '\'',
                    _ => {
                        let code = if let Some(hex) = entity.strip_prefix("#x") {
                            u32::from_str_radix(hex, 16).ok().filter(|_| !hex.starts_with('+'))
                        } else if let Some(dec) = entity.strip_prefix('#') {
                            dec.parse::<u32>().ok().filter(|_| !dec.starts_with('+'))
                        } else {
                            None
                        };
                        code.and_then(char::from_u32)
                            .filter(|&c| is_xml_char(c))
                            .ok_or_else(|| format!("unknown entity reference &{entity};"))?
                    }
                };
                out.push(decoded);
                for _ in 0..entity.chars().count() + 1 {
                    chars.next();
                }
            }
            '\t' | '\n' | '\r' if attribute => out.push(' '),
            _ => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_namespaces_prefixes_and_text() {
        let doc = "<?xml version=\"1.0\" encoding='UTF-8'?><!-- c --><a xmlns=\"urn:a\" \
                   xmlns:h=\"urn:h\">\r\n <b>x<![CDATA[<y>]]>&amp;&#x41;<c h:x=\"1\t&amp; 2&#10;\" \
                   y='&#x41;'/></b></a><?pi data?>";
        let d = parse(doc).unwrap();
        let (c_id, c) = d.elements().find(|(_, e)| e.local == "c").unwrap();
        assert_eq!((c.namespace.as_str(), c.prefix.as_str()), ("urn:a", ""));
        assert_eq!(c.attribute("urn:h", "x"), Some("1 & 2\n"));
        assert_eq!(c.attributes[0].prefix, "h");
        assert_eq!(c.attribute("", "y"), Some("A"));
        let b = d.nodes[c_id].parent.unwrap();
        assert_eq!(d.text(b), "x<y>&A");
        assert_eq!(d.text(d.root), "\n ");
        assert_eq!(
            d.in_scope_namespaces(c_id),
            [("".to_owned(), "urn:a".to_owned()), ("h".to_owned(), "urn:h".to_owned())]
        );
        assert_eq!(d.children.len(), 3);
    }

    #[test]
    fn refuses_malformed_documents() {
        for doc in [
            "<a><b></a>",
            "<a>",
            "<a x=1/>",
            "<a x='1' x='2'/>",
            "<a xmlns:p='urn:1' xmlns:q='urn:1' p:x='1' q:x='2'/>",
            "<!DOCTYPE a><a/>",
            "<a/><b/>",
            "<p:a/>",
            "<a x='&foo;'/>",
            "<a x='&#0;'/>",
            "<a>\u{1}</a>",
            "<a><!-- </a>",
            "<a><!-- a -- b --></a>",
            "<a>]]></a>",
            "<a xmlns:p=''/>",
            "<a xmlns:xml='urn:x'/>",
            "<a x='1'y='2'/>",
            "<?xml version='1.0' encoding='ISO-8859-1'?><a/>",
            "<a/><?xml version='1.0'?>",
            "text<a/>",
            "",
        ] {
            assert!(parse(doc).is_err(), "{doc}");
        }
    }
}
