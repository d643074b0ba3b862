//! XML canonicalisation for RIM signatures: Canonical XML 1.0 and 1.1 (inclusive) and Exclusive
//! XML Canonicalization 1.0, with or without comments, over a tree from `xml.rs`.
//!
//! No maintained pure-Rust crate canonicalises a parsed tree (the XML crates in the workspace
//! stream events and drop what canonical XML needs: prefixes as written and the namespace axis),
//! so this follows the W3C specifications directly, for the two node sets an enveloped signature
//! needs: the whole document without the `Signature` element (and without comments, as a same-
//! document `URI=""` reference has it), and the subtree of one element (`SignedInfo`).
//!
//! - Namespace declarations come first, sorted by prefix (the default namespace first), then
//!   attributes sorted by namespace URI and local name (unqualified first).
//! - Inclusive: an element renders every namespace node in scope that its nearest output
//!   ancestor does not render with the same value (so the apex of a subtree renders every
//!   namespace in scope), and `xmlns=""` when the default namespace is undeclared here but was
//!   rendered above. At the apex of a subtree, `xml:lang` and `xml:space` of omitted ancestors
//!   are inherited (Canonical XML 1.0 also inherits `xml:base` and `xml:id`; an `xml:base` that
//!   Canonical XML 1.1 would have to rewrite is refused).
//! - Exclusive: an element renders only the namespaces it visibly uses (its own prefix and its
//!   attributes' prefixes, plus those named in the `InclusiveNamespaces` prefix list, handled as
//!   inclusive) that its nearest output ancestor did not render with the same value.
//! - Empty elements become start and end tag pairs; text escapes `&`, `<`, `>` and CR; attribute
//!   values escape `&`, `<`, `"`, TAB, LF and CR; comments and processing instructions outside
//!   the root element are separated from it by a line feed.

use std::collections::BTreeMap;

use super::xml::{Document, NodeId, NodeKind, XML_NS};

/// A canonicalisation algorithm, as its XMLDSig identifier names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Algorithm {
    /// Canonical XML 1.0 (`http://www.w3.org/TR/2001/REC-xml-c14n-20010315`).
    Inclusive10 {
        /// The `#WithComments` variant.
        comments: bool,
    },
    /// Canonical XML 1.1 (`http://www.w3.org/2006/12/xml-c14n11`).
    Inclusive11 {
        /// The `#WithComments` variant.
        comments: bool,
    },
    /// Exclusive XML Canonicalization 1.0 (`http://www.w3.org/2001/10/xml-exc-c14n#`).
    Exclusive {
        /// The `WithComments` variant.
        comments: bool,
        /// Prefixes of the `InclusiveNamespaces PrefixList` ("" for `#default`).
        inclusive_prefixes: Vec<String>,
    },
}

impl Algorithm {
    /// The algorithm an identifier names, without an exclusive prefix list; `None` for any other
    /// URI.
    pub(crate) fn from_uri(uri: &str) -> Option<Self> {
        Some(match uri {
            "http://www.w3.org/TR/2001/REC-xml-c14n-20010315" => {
                Self::Inclusive10 { comments: false }
            }
            "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments" => {
                Self::Inclusive10 { comments: true }
            }
            "http://www.w3.org/2006/12/xml-c14n11" => Self::Inclusive11 { comments: false },
            "http://www.w3.org/2006/12/xml-c14n11#WithComments" => {
                Self::Inclusive11 { comments: true }
            }
            "http://www.w3.org/2001/10/xml-exc-c14n#" => {
                Self::Exclusive { comments: false, inclusive_prefixes: Vec::new() }
            }
            "http://www.w3.org/2001/10/xml-exc-c14n#WithComments" => {
                Self::Exclusive { comments: true, inclusive_prefixes: Vec::new() }
            }
            _ => return None,
        })
    }

    fn comments(&self) -> bool {
        match self {
            Self::Inclusive10 { comments }
            | Self::Inclusive11 { comments }
            | Self::Exclusive { comments, .. } => *comments,
        }
    }
}

/// What to canonicalise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeSet {
    /// The whole document without comments (a same-document `URI=""` reference), less the
    /// subtree of `omit` when given (the enveloped-signature transform).
    Document {
        /// The `Signature` element an enveloped signature removes.
        omit: Option<NodeId>,
    },
    /// The subtree of one element, comments included if the algorithm keeps them.
    Subtree(NodeId),
}

/// The canonical form of `set` in `doc`. The error says what cannot be canonicalised.
pub(crate) fn canonicalize(
    doc: &Document,
    set: NodeSet,
    algorithm: &Algorithm,
) -> Result<Vec<u8>, String> {
    let mut out = Writer { doc, algorithm, out: String::new() };
    match set {
        NodeSet::Document { omit } => {
            let mut before_root = true;
            for &child in &doc.children {
                match doc.nodes.get(child).map(|n| &n.kind) {
                    Some(NodeKind::Element(_)) => {
                        out.element(child, &BTreeMap::new(), omit, false, None)?;
                        before_root = false;
                    }
                    Some(NodeKind::Pi { .. }) => {
                        if !before_root {
                            out.out.push('\n');
                        }
                        out.node(child, &BTreeMap::new(), omit, false)?;
                        if before_root {
                            out.out.push('\n');
                        }
                    }
                    // A same-document reference drops comments; text outside the root is only
                    // white space, which is not rendered.
                    _ => {}
                }
            }
        }
        NodeSet::Subtree(apex) => {
            let inherited = out.inherited_xml_attributes(apex)?;
            out.element(apex, &BTreeMap::new(), None, algorithm.comments(), Some(inherited))?;
        }
    }
    Ok(out.out.into_bytes())
}

/// Namespaces rendered by output ancestors: prefix ("" for the default) to URI.
type Rendered = BTreeMap<String, String>;

struct Writer<'d> {
    doc: &'d Document,
    algorithm: &'d Algorithm,
    out: String,
}

impl Writer<'_> {
    fn node(
        &mut self,
        id: NodeId,
        rendered: &Rendered,
        omit: Option<NodeId>,
        comments: bool,
    ) -> Result<(), String> {
        match self.doc.nodes.get(id).map(|n| &n.kind) {
            Some(NodeKind::Element(_)) => self.element(id, rendered, omit, comments, None)?,
            Some(NodeKind::Text(text)) => escape_text(&mut self.out, text),
            Some(NodeKind::Comment(text)) if comments => {
                self.out.push_str("<!--");
                self.out.push_str(text);
                self.out.push_str("-->");
            }
            Some(NodeKind::Pi { target, data }) => {
                self.out.push_str("<?");
                self.out.push_str(target);
                if !data.is_empty() {
                    self.out.push(' ');
                    self.out.push_str(data);
                }
                self.out.push_str("?>");
            }
            _ => {}
        }
        Ok(())
    }

    /// Renders element `id` and its subtree; `inherited` carries the apex's inherited `xml:*`
    /// attributes (only for the apex of a subtree).
    fn element(
        &mut self,
        id: NodeId,
        rendered: &Rendered,
        omit: Option<NodeId>,
        comments: bool,
        inherited: Option<Vec<(String, String)>>,
    ) -> Result<(), String> {
        if omit == Some(id) {
            return Ok(());
        }
        let doc = self.doc;
        let element = doc.element(id).ok_or("not an element")?;
        let in_scope: Rendered = doc.in_scope_namespaces(id).into_iter().collect();
        let default_here = in_scope.get("").cloned().unwrap_or_default();

        // The namespace nodes to render.
        let mut render: Rendered = BTreeMap::new();
        let mut consider = |prefix: &str| {
            let value = if prefix.is_empty() {
                default_here.clone()
            } else {
                match in_scope.get(prefix) {
                    Some(uri) => uri.clone(),
                    None => return,
                }
            };
            let above = rendered.get(prefix).map(String::as_str).unwrap_or_default();
            if value != above {
                render.insert(prefix.to_owned(), value);
            }
        };
        match self.algorithm {
            Algorithm::Exclusive { inclusive_prefixes, .. } => {
                consider(&element.prefix);
                for attribute in &element.attributes {
                    if !attribute.prefix.is_empty() && attribute.prefix != "xml" {
                        consider(&attribute.prefix);
                    }
                }
                for prefix in inclusive_prefixes {
                    consider(prefix);
                }
            }
            Algorithm::Inclusive10 { .. } | Algorithm::Inclusive11 { .. } => {
                consider("");
                for prefix in in_scope.keys() {
                    consider(prefix);
                }
            }
        }
        // `xml` is never rendered, and an empty default only as the undeclaration `xmlns=""`.
        render.remove("xml");

        let mut attributes: Vec<(&str, &str, String, &str)> = element
            .attributes
            .iter()
            .map(|a| {
                (
                    a.namespace.as_str(),
                    a.local.as_str(),
                    qualified(&a.prefix, &a.local),
                    a.value.as_str(),
                )
            })
            .collect();
        let inherited = inherited.unwrap_or_default();
        for (local, value) in &inherited {
            if element.attribute(XML_NS, local).is_none() {
                attributes.push((XML_NS, local, format!("xml:{local}"), value));
            }
        }
        attributes.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));

        let name = qualified(&element.prefix, &element.local);
        self.out.push('<');
        self.out.push_str(&name);
        for (prefix, uri) in &render {
            self.out.push_str(if prefix.is_empty() { " xmlns" } else { " xmlns:" });
            self.out.push_str(prefix);
            self.out.push_str("=\"");
            escape_attribute(&mut self.out, uri);
            self.out.push('"');
        }
        for (_, _, qname, value) in &attributes {
            self.out.push(' ');
            self.out.push_str(qname);
            self.out.push_str("=\"");
            escape_attribute(&mut self.out, value);
            self.out.push('"');
        }
        self.out.push('>');

        let mut below = rendered.clone();
        below.extend(render);
        for &child in &element.children {
            self.node(child, &below, omit, comments)?;
        }
        self.out.push_str("</");
        self.out.push_str(&name);
        self.out.push('>');
        Ok(())
    }

    /// The `xml:*` attributes the apex `id` inherits from its omitted ancestors (nearest
    /// first wins), for the inclusive algorithms.
    fn inherited_xml_attributes(&self, id: NodeId) -> Result<Vec<(String, String)>, String> {
        let inheritable: &[&str] = match self.algorithm {
            Algorithm::Exclusive { .. } => return Ok(Vec::new()),
            Algorithm::Inclusive10 { .. } => &["base", "id", "lang", "space"],
            Algorithm::Inclusive11 { .. } => &["lang", "space"],
        };
        let mut found: Vec<(String, String)> = Vec::new();
        let mut current = self.doc.nodes.get(id).and_then(|n| n.parent);
        while let Some(at) = current {
            let Some(element) = self.doc.element(at) else { break };
            for attribute in element.attributes.iter().filter(|a| a.namespace == XML_NS) {
                if matches!(self.algorithm, Algorithm::Inclusive11 { .. })
                    && attribute.local == "base"
                {
                    return Err("an ancestor of the canonicalised element has xml:base, which \
                                Canonical XML 1.1 would have to rewrite; not supported"
                        .into());
                }
                if inheritable.contains(&attribute.local.as_str())
                    && !found.iter().any(|(l, _)| l == &attribute.local)
                {
                    found.push((attribute.local.clone(), attribute.value.clone()));
                }
            }
            current = self.doc.nodes.get(at).and_then(|n| n.parent);
        }
        Ok(found)
    }
}

fn qualified(prefix: &str, local: &str) -> String {
    if prefix.is_empty() { local.to_owned() } else { format!("{prefix}:{local}") }
}

fn escape_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            _ => out.push(c),
        }
    }
}

fn escape_attribute(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvidia::xml;

    fn c14n(text: &str, set: impl Fn(&Document) -> NodeSet, algorithm: &Algorithm) -> String {
        let doc = xml::parse(text).unwrap();
        String::from_utf8(canonicalize(&doc, set(&doc), algorithm).unwrap()).unwrap()
    }

    fn whole(_: &Document) -> NodeSet {
        NodeSet::Document { omit: None }
    }

    fn named(local: &'static str) -> impl Fn(&Document) -> NodeSet {
        move |doc| NodeSet::Subtree(doc.elements().find(|(_, e)| e.local == local).unwrap().0)
    }

    const C11: Algorithm = Algorithm::Inclusive11 { comments: false };
    const C10: Algorithm = Algorithm::Inclusive10 { comments: false };
    fn exc() -> Algorithm {
        Algorithm::Exclusive { comments: false, inclusive_prefixes: Vec::new() }
    }

    #[test]
    fn whole_document_sorts_attributes_expands_empty_tags_and_drops_comments() {
        let doc = "<?xml version=\"1.0\"?>\r\n<?pi  x ?><!-- c --><r xmlns:b=\"urn:b\" \
                   xmlns:a=\"urn:a\" z=\"1\" b:y=\"2\" a:y=\"3\" x='&#9;&quot;&lt;&gt;'>\r\n  \
                   <e/><!-- c --><f>&lt;&gt;&amp;&#xD;</f></r><?post?>";
        assert_eq!(
            c14n(doc, whole, &C11),
            "<?pi x ?>\n<r xmlns:a=\"urn:a\" xmlns:b=\"urn:b\" x=\"&#x9;&quot;&lt;>\" z=\"1\" \
             a:y=\"3\" b:y=\"2\">\n  <e></e><f>&lt;&gt;&amp;&#xD;</f></r>\n<?post?>"
        );
    }

    #[test]
    fn redundant_declarations_are_dropped_and_the_default_undeclared() {
        let doc = "<r xmlns=\"urn:d\" xmlns:p=\"urn:p\"><p:a xmlns:p=\"urn:p\" xmlns=\"\">\
                   <b xmlns=\"urn:d\"/></p:a></r>";
        assert_eq!(
            c14n(doc, whole, &C11),
            "<r xmlns=\"urn:d\" xmlns:p=\"urn:p\"><p:a xmlns=\"\"><b xmlns=\"urn:d\"></b></p:a></r>"
        );
    }

    #[test]
    fn inclusive_subtree_renders_every_namespace_in_scope_and_inherits_xml_attributes() {
        let doc = "<r xmlns=\"urn:d\" xmlns:p=\"urn:p\" xml:lang=\"en\" xml:id=\"i\">\
                   <s xmlns:q=\"urn:q\"><p:t a=\"1\"><u/></p:t></s></r>";
        assert_eq!(
            c14n(doc, named("t"), &C11),
            "<p:t xmlns=\"urn:d\" xmlns:p=\"urn:p\" xmlns:q=\"urn:q\" a=\"1\" xml:lang=\"en\">\
             <u></u></p:t>"
        );
        assert_eq!(
            c14n(doc, named("t"), &C10),
            "<p:t xmlns=\"urn:d\" xmlns:p=\"urn:p\" xmlns:q=\"urn:q\" a=\"1\" xml:id=\"i\" \
             xml:lang=\"en\"><u></u></p:t>"
        );
    }

    #[test]
    fn exclusive_renders_only_visibly_used_namespaces() {
        let doc = "<r xmlns=\"urn:d\" xmlns:p=\"urn:p\" xmlns:q=\"urn:q\" xml:lang=\"en\">\
                   <p:t a=\"1\" q:b=\"2\"><u/><p:v/></p:t></r>";
        assert_eq!(
            c14n(doc, named("t"), &exc()),
            "<p:t xmlns:p=\"urn:p\" xmlns:q=\"urn:q\" a=\"1\" q:b=\"2\"><u xmlns=\"urn:d\"></u>\
             <p:v></p:v></p:t>"
        );
        let with_list =
            Algorithm::Exclusive { comments: false, inclusive_prefixes: vec![String::new()] };
        assert_eq!(
            c14n(doc, named("t"), &with_list),
            "<p:t xmlns=\"urn:d\" xmlns:p=\"urn:p\" xmlns:q=\"urn:q\" a=\"1\" q:b=\"2\"><u></u>\
             <p:v></p:v></p:t>"
        );
        // The whole document: the root's unused declarations move to where they are used.
        assert_eq!(
            c14n(doc, whole, &exc()),
            "<r xmlns=\"urn:d\" xml:lang=\"en\"><p:t xmlns:p=\"urn:p\" xmlns:q=\"urn:q\" a=\"1\" \
             q:b=\"2\"><u></u><p:v></p:v></p:t></r>"
        );
    }

    #[test]
    fn omitted_subtree_and_comments_by_algorithm() {
        let doc = "<r><a><!--x--></a><s><t/></s></r>";
        let omit = |d: &Document| NodeSet::Document {
            omit: Some(d.elements().find(|(_, e)| e.local == "s").unwrap().0),
        };
        assert_eq!(c14n(doc, omit, &C11), "<r><a></a></r>");
        assert_eq!(
            c14n(doc, named("a"), &Algorithm::Inclusive11 { comments: true }),
            "<a><!--x--></a>"
        );
        assert_eq!(c14n(doc, named("a"), &C11), "<a></a>");
    }

    #[test]
    fn xml_base_on_an_omitted_ancestor_is_refused_in_1_1() {
        let doc = xml::parse("<r xml:base=\"http://x/\"><a/></r>").unwrap();
        let a = doc.elements().find(|(_, e)| e.local == "a").unwrap().0;
        assert!(canonicalize(&doc, NodeSet::Subtree(a), &C11).is_err());
        assert!(canonicalize(&doc, NodeSet::Subtree(a), &C10).is_ok());
    }
}
