//! Chat template rendering: a model's Jinja chat template turned into a prompt with minijinja.
//!
//! Hugging Face chat templates are Jinja2 run by Python, so they call Python string and dict
//! methods (`message['content'].strip()`, `messages[0].get('role')`) and the helper
//! `raise_exception`. minijinja provides the Jinja language; the Python methods the templates
//! commonly use are supplied here through minijinja's unknown-method hook. The environment is
//! configured like `transformers`' renderer (`trim_blocks`, `lstrip_blocks`, no autoescape).

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, Value};
use zeroize::Zeroizing;

use super::EngineError;
use super::llm::ChatMessage;

const TEMPLATE_NAME: &str = "chat_template";

/// A parsed chat template with the special-token texts it may refer to.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Parses `source`; `bos_token`/`eos_token` are the texts the template sees under those
    /// names (empty when the model has none).
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, EngineError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_unknown_method_callback(python_method);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned(TEMPLATE_NAME, source.to_owned()).map_err(|e| {
            EngineError::ChatTemplate(format!("the model's template does not parse: {e}"))
        })?;
        Ok(Self { env, bos_token: bos_token.to_owned(), eos_token: eos_token.to_owned() })
    }

    /// Renders the conversation with `add_generation_prompt = true`, so the prompt ends where
    /// the assistant's answer begins.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<Zeroizing<String>, EngineError> {
        if messages.is_empty() {
            return Err(EngineError::InvalidArgument("the conversation has no messages".into()));
        }
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| EngineError::ChatTemplate(e.to_string()))?;
        let ctx = minijinja::context! {
            messages => Value::from_serialize(messages),
            add_generation_prompt => true,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
        };
        template.render(ctx).map(Zeroizing::new).map_err(|e| {
            EngineError::ChatTemplate(format!("rendering the conversation failed: {e}"))
        })
    }
}

/// `raise_exception(message)`: HF templates call it to reject a conversation they cannot format.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

fn bad_args(method: &str, why: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("{method}(): {why}"))
}

fn optional_str<'a>(
    method: &str,
    args: &'a [Value],
    index: usize,
) -> Result<Option<&'a str>, Error> {
    match args.get(index) {
        None => Ok(None),
        Some(v) if v.is_none() || v.is_undefined() => Ok(None),
        Some(v) => {
            v.as_str().map(Some).ok_or_else(|| bad_args(method, "expected a string argument"))
        }
    }
}

fn required_str<'a>(method: &str, args: &'a [Value], index: usize) -> Result<&'a str, Error> {
    optional_str(method, args, index)?.ok_or_else(|| bad_args(method, "missing a string argument"))
}

fn strip_with<'a>(s: &'a str, chars: Option<&str>, left: bool, right: bool) -> &'a str {
    let is_stripped = |c: char| match chars {
        None => c.is_whitespace(),
        Some(set) => set.contains(c),
    };
    let s = if left { s.trim_start_matches(is_stripped) } else { s };
    if right { s.trim_end_matches(is_stripped) } else { s }
}

/// A prefix/suffix argument: one string or a list of strings (Python accepts a tuple).
fn affixes(method: &str, arg: Option<&Value>) -> Result<Vec<String>, Error> {
    let arg = arg.ok_or_else(|| bad_args(method, "missing an argument"))?;
    if let Some(s) = arg.as_str() {
        return Ok(vec![s.to_owned()]);
    }
    if arg.kind() == ValueKind::Seq {
        return arg
            .try_iter()?
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| bad_args(method, "expected strings"))
            })
            .collect();
    }
    Err(bad_args(method, "expected a string or a list of strings"))
}

fn string_method(s: &str, method: &str, args: &[Value]) -> Result<Value, Error> {
    Ok(match method {
        "strip" => Value::from(strip_with(s, optional_str(method, args, 0)?, true, true)),
        "lstrip" => Value::from(strip_with(s, optional_str(method, args, 0)?, true, false)),
        "rstrip" => Value::from(strip_with(s, optional_str(method, args, 0)?, false, true)),
        "lower" => Value::from(s.to_lowercase()),
        "upper" => Value::from(s.to_uppercase()),
        "startswith" => {
            Value::from(affixes(method, args.first())?.iter().any(|p| s.starts_with(p.as_str())))
        }
        "endswith" => {
            Value::from(affixes(method, args.first())?.iter().any(|p| s.ends_with(p.as_str())))
        }
        "split" => {
            let sep = optional_str(method, args, 0)?;
            let max = match args.get(1) {
                None => None,
                Some(v) => Some(
                    i64::try_from(v.clone())
                        .map_err(|_| bad_args(method, "maxsplit must be an integer"))?,
                ),
            };
            let max = max.and_then(|m| usize::try_from(m).ok());
            let parts: Vec<Value> = match (sep, max) {
                (Some(""), _) => return Err(bad_args(method, "empty separator")),
                (Some(sep), Some(m)) => s.splitn(m + 1, sep).map(Value::from).collect(),
                (Some(sep), None) => s.split(sep).map(Value::from).collect(),
                (None, _) => s.split_whitespace().map(Value::from).collect(),
            };
            Value::from(parts)
        }
        "replace" => {
            let old = required_str(method, args, 0)?;
            let new = required_str(method, args, 1)?;
            Value::from(s.replace(old, new))
        }
        "count" => Value::from(s.matches(required_str(method, args, 0)?).count()),
        "find" => {
            let needle = required_str(method, args, 0)?;
            Value::from(s.find(needle).map_or(-1, |byte| s[..byte].chars().count() as i64))
        }
        "join" => {
            let arg = args.first().ok_or_else(|| bad_args(method, "missing an argument"))?;
            let mut out = String::new();
            for (i, item) in arg.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(s);
                }
                out.push_str(&item.to_string());
            }
            Value::from(out)
        }
        "isdigit" => Value::from(!s.is_empty() && s.chars().all(|c| c.is_ascii_digit())),
        "isspace" => Value::from(!s.is_empty() && s.chars().all(char::is_whitespace)),
        _ => return Err(Error::from(ErrorKind::UnknownMethod)),
    })
}

fn map_method(
    state: &State<'_, '_>,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    match method {
        "items" => state.apply_filter("items", std::slice::from_ref(value)),
        "keys" => Ok(Value::from(value.try_iter()?.collect::<Vec<_>>())),
        "values" => {
            let mut out = Vec::new();
            for key in value.try_iter()? {
                out.push(value.get_item(&key)?);
            }
            Ok(Value::from(out))
        }
        "get" => {
            let key = args.first().ok_or_else(|| bad_args(method, "missing a key"))?;
            let found = value.get_item(key)?;
            if found.is_undefined() {
                Ok(args.get(1).cloned().unwrap_or(Value::from(())))
            } else {
                Ok(found)
            }
        }
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

/// The Python methods chat templates call on strings and dicts.
fn python_method(
    state: &State<'_, '_>,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    // Python methods take no keyword arguments in the templates we support.
    if args.last().is_some_and(|a| Kwargs::try_from(a.clone()).is_ok()) {
        return Err(bad_args(method, "keyword arguments are not supported"));
    }
    match value.kind() {
        ValueKind::String => string_method(value.as_str().unwrap_or_default(), method, args),
        ValueKind::Map => map_method(state, value, method, args),
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage { role: role.into(), content: content.into() }
    }

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_chatml_with_generation_prompt() {
        let t = ChatTemplate::new(CHATML, "", "<|im_end|>").expect("parse");
        let out = t.render(&[msg("user", "Hi")]).expect("render");
        assert_eq!(out.as_str(), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn python_methods_used_by_hf_templates_work() {
        let src = "{{ bos_token }}{% for m in messages %}{% if m.get('role') == 'system' %}[S]{% endif %}\
                   {{ m['content'] | trim }}|{{ m['content'].strip() }}|{{ m.content.startswith(('x', ' he')) }}|\
                   {{ m.content.split()|length }}|{{ ','.join(m.content.split()) }}|{{ m.get('missing', 'dflt') }}\
                   {% for k, v in m.items() %}{% if k == 'role' %}<{{ v.upper() }}>{% endif %}{% endfor %}{% endfor %}";
        let t = ChatTemplate::new(src, "<s>", "</s>").expect("parse");
        let out = t.render(&[msg("system", " hello world ")]).expect("render");
        // Python booleans render as Python prints them, as in HF (jinja2) templates.
        assert_eq!(out.as_str(), "<s>[S]hello world|hello world|True|2|hello,world|dflt<SYSTEM>");
    }

    #[test]
    fn raise_exception_and_parse_errors_are_reported() {
        let t = ChatTemplate::new(
            "{% if messages[0]['role'] != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}",
            "",
            "",
        )
        .expect("parse");
        let err = t.render(&[msg("assistant", "x")]).expect_err("raised");
        assert!(err.to_string().contains("first message must be from the user"), "{err}");

        let err = ChatTemplate::new("{% for %}", "", "").expect_err("bad template");
        assert!(err.to_string().contains("does not parse"), "{err}");

        let t = ChatTemplate::new(CHATML, "", "").expect("parse");
        assert!(t.render(&[]).is_err());
    }
}
