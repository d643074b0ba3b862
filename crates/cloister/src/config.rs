//! `--config FILE` for the long-running commands (`serve …`, `proxy`): a TOML table whose keys
//! are the command's own long flag names, read before the command line is parsed for real. A flag
//! given on the command line, or its environment variable, overrides the file; the file overrides
//! the defaults.
//!
//! The file is turned into arguments (`--listen=…`) appended to the command line, and only for
//! the flags the command line and the environment left unset, so clap checks the values, the
//! conflicts and the requirements of the file exactly as it checks flags: a setting that would be
//! refused as a flag is refused from the file, with the same message.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{Arg, ArgAction, Command};

/// The id of the `--config` argument on every command that takes one.
const CONFIG: &str = "config";

/// Returns `args` with the settings of the `--config` file of the command they name appended, or
/// `args` unchanged when that command takes no `--config` or none is given.
///
/// The command line is read here without clap's checks: a setting the file supplies may be one
/// clap requires (`--database`), so matching before the file is merged would fail. Which flags the
/// command line sets is read off its tokens (`--name`, `--name=value`, `-x`), and which the
/// environment sets off each flag's variable; clap checks everything afterwards, once.
pub fn merge_config_file(command: Command, args: Vec<OsString>) -> Result<Vec<OsString>> {
    let tokens: Vec<String> = args.iter().map(|arg| arg.to_string_lossy().into_owned()).collect();
    // The subcommand path: the leading tokens that name subcommands, in turn.
    let mut path = vec![command.get_name().to_owned()];
    let mut command = &command;
    let mut rest = tokens.get(1..).unwrap_or_default();
    while let Some((first, tail)) = rest.split_first()
        && let Some(sub) = command.find_subcommand(first)
    {
        path.push(first.clone());
        command = sub;
        rest = tail;
    }
    if !command.get_arguments().any(|arg| arg.get_id() == CONFIG) {
        return Ok(args);
    }
    let Some(file) = flag_value(rest, "config") else {
        return Ok(args);
    };
    let file = PathBuf::from(file);
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("reading the configuration file {}", file.display()))?;
    let given = |arg: &Arg| {
        let on_command_line = rest.iter().take_while(|t| *t != "--").any(|token| {
            arg.get_long().is_some_and(|long| {
                token.strip_prefix("--").is_some_and(|name| {
                    name == long || name.strip_prefix(long).is_some_and(|v| v.starts_with('='))
                })
            }) || arg.get_short().is_some_and(|short| {
                token.len() >= 2
                    && !token.starts_with("--")
                    && token.strip_prefix('-').is_some_and(|s| s.starts_with(short))
            })
        });
        let in_environment =
            arg.get_env().is_some_and(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
        on_command_line || in_environment
    };
    let settings = settings_as_arguments(command, &given, &text)
        .with_context(|| format!("{} (for `{}`)", file.display(), path.join(" ")))?;
    let mut args = args;
    args.extend(settings);
    Ok(args)
}

/// The value of `--name VALUE` or `--name=VALUE` among `tokens` (before any `--`).
fn flag_value(tokens: &[String], name: &str) -> Option<String> {
    let flag = format!("--{name}");
    let mut tokens = tokens.iter().take_while(|t| *t != "--");
    while let Some(token) = tokens.next() {
        if *token == flag {
            return tokens.next().cloned();
        }
        if let Some(value) = token.strip_prefix(&flag).and_then(|v| v.strip_prefix('=')) {
            return Some(value.to_owned());
        }
    }
    None
}

/// The arguments that `text`, a TOML table of settings for `command`, stands for, leaving out
/// the settings `given` says the command line or the environment already set.
fn settings_as_arguments(
    command: &Command,
    given: &dyn Fn(&Arg) -> bool,
    text: &str,
) -> Result<Vec<OsString>> {
    let table: toml::Table = text.parse().context("not valid TOML")?;
    let mut arguments = Vec::new();
    for (key, value) in &table {
        let Some(arg) = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(key.as_str()) && arg.get_id() != CONFIG)
        else {
            bail!(
                "`{key}` is not a setting of this command; the settings are its long flag names: {}",
                setting_names(command).join(", ")
            );
        };
        if given(arg) {
            continue;
        }
        let flag = format!("--{key}");
        match arg.get_action() {
            ArgAction::SetTrue => match value {
                toml::Value::Boolean(true) => arguments.push(OsString::from(flag)),
                toml::Value::Boolean(false) => {}
                _ => bail!("`{key}` is a switch: write `{key} = true` or `{key} = false`"),
            },
            ArgAction::Append => {
                let values = match value {
                    toml::Value::Array(values) => values.iter().collect(),
                    single => vec![single],
                };
                for value in values {
                    arguments.push(format!("{flag}={}", scalar(key, value)?).into());
                }
            }
            _ => {
                if let toml::Value::Array(_) = value {
                    bail!("`{key}` takes one value, not a list");
                }
                arguments.push(format!("{flag}={}", scalar(key, value)?).into());
            }
        }
    }
    Ok(arguments)
}

/// A TOML scalar as the text a flag would carry.
fn scalar(key: &str, value: &toml::Value) -> Result<String> {
    Ok(match value {
        toml::Value::String(text) => text.clone(),
        toml::Value::Integer(number) => number.to_string(),
        toml::Value::Float(number) => number.to_string(),
        toml::Value::Boolean(switch) => switch.to_string(),
        toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => {
            bail!("`{key}` must be a string, a number or a boolean")
        }
    })
}

/// The keys a configuration file for `command` may hold.
fn setting_names(command: &Command) -> Vec<String> {
    let mut names: Vec<String> = command
        .get_arguments()
        .filter(|arg| arg.get_id() != CONFIG && !arg.is_hide_set())
        .filter_map(|arg| arg.get_long().map(str::to_owned))
        .filter(|long| long != "help")
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> Command {
        Command::new("cloister").subcommand(
            Command::new("serve").subcommand(
                Command::new("thing")
                    .arg(Arg::new(CONFIG).long("config").value_parser(clap::value_parser!(PathBuf)))
                    .arg(Arg::new("listen").long("listen").default_value("127.0.0.1:1"))
                    .arg(Arg::new("database").long("database").env("CLOISTER_TEST_CONFIG_DB"))
                    .arg(Arg::new("rate").long("rate-limit").action(ArgAction::Append))
                    .arg(Arg::new("plain").long("insecure-plain-http").action(ArgAction::SetTrue))
                    .arg(
                        Arg::new("interval")
                            .long("checkpoint-interval")
                            .value_parser(clap::value_parser!(u64)),
                    ),
            ),
        )
    }

    fn arguments(text: &str, extra: &[&str]) -> Result<Vec<String>> {
        let sub =
            command().find_subcommand("serve").unwrap().find_subcommand("thing").unwrap().clone();
        let given = |arg: &Arg| {
            extra
                .iter()
                .any(|token| arg.get_long().is_some_and(|long| *token == format!("--{long}")))
        };
        Ok(settings_as_arguments(&sub, &given, text)?
            .into_iter()
            .map(|arg| arg.into_string().unwrap())
            .collect())
    }

    #[test]
    fn the_file_is_found_and_what_the_command_line_sets_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "listen = \"h:2\"\ncheckpoint-interval = 7\n").unwrap();
        let args = |extra: &[&str]| -> Vec<String> {
            let mut args: Vec<OsString> =
                ["cloister", "serve", "thing"].map(OsString::from).to_vec();
            args.extend(extra.iter().map(OsString::from));
            merge_config_file(command(), args)
                .unwrap()
                .into_iter()
                .map(|arg| arg.into_string().unwrap())
                .collect()
        };
        let file = file.to_str().unwrap();
        assert_eq!(
            args(&["--config", file, "--listen=h:1"]),
            [
                "cloister",
                "serve",
                "thing",
                "--config",
                file,
                "--listen=h:1",
                "--checkpoint-interval=7"
            ]
        );
        let with_equals = format!("--config={file}");
        assert_eq!(
            args(&[&with_equals, "--checkpoint-interval", "1"]),
            [
                "cloister",
                "serve",
                "thing",
                &with_equals,
                "--checkpoint-interval",
                "1",
                "--listen=h:2"
            ]
        );
        // No --config, or a command that takes none: unchanged.
        assert_eq!(args(&["--listen", "h:1"]), ["cloister", "serve", "thing", "--listen", "h:1"]);
        let other = merge_config_file(
            command(),
            ["cloister", "serve", "--config", file].map(OsString::from).to_vec(),
        )
        .unwrap();
        assert_eq!(other.len(), 4);
    }

    #[test]
    fn every_kind_of_setting_becomes_the_flag_it_names() {
        let text = "listen = \"0.0.0.0:9\"\nrate-limit = [\"release=5\", \"reads=9\"]\n\
                    insecure-plain-http = true\ncheckpoint-interval = 30\n";
        assert_eq!(
            arguments(text, &[]).unwrap(),
            [
                "--checkpoint-interval=30",
                "--insecure-plain-http",
                "--listen=0.0.0.0:9",
                "--rate-limit=release=5",
                "--rate-limit=reads=9",
            ]
        );
        assert!(arguments("insecure-plain-http = false", &[]).unwrap().is_empty());
    }

    #[test]
    fn the_command_line_overrides_the_file() {
        let got =
            arguments("listen = \"0.0.0.0:9\"\ncheckpoint-interval = 30", &["--listen", "h:1"]);
        assert_eq!(got.unwrap(), ["--checkpoint-interval=30"]);
    }

    #[test]
    fn a_file_that_is_not_a_table_of_known_flags_is_refused_with_the_reason() {
        let unknown = arguments("lisen = \"x\"", &[]).unwrap_err().to_string();
        assert!(unknown.contains("`lisen` is not a setting"), "{unknown}");
        assert!(unknown.contains("listen, rate-limit"), "{unknown}");
        let itself = arguments("config = \"other.toml\"", &[]).unwrap_err().to_string();
        assert!(itself.contains("`config` is not a setting"), "{itself}");
        let switch = arguments("insecure-plain-http = \"yes\"", &[]).unwrap_err().to_string();
        assert!(switch.contains("is a switch"), "{switch}");
        let list = arguments("listen = [\"a\", \"b\"]", &[]).unwrap_err().to_string();
        assert!(list.contains("one value, not a list"), "{list}");
        let table = arguments("listen = { a = 1 }", &[]).unwrap_err().to_string();
        assert!(table.contains("a string, a number or a boolean"), "{table}");
        let broken = arguments("listen = ", &[]).unwrap_err().to_string();
        assert!(broken.contains("not valid TOML"), "{broken}");
    }
}
