//! `cloister model`: import a model (ONNX file, GGUF file or safetensors directory) into a
//! repository, sealed to a key-broker key under a manifest the owner signs; list, show (verify)
//! and delete versions. Also `cloister keygen --signing`, which makes the owner's key.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use cloister_repository::{ImportProgress, NewModel, Repository, peek_manifest};
use cloister_seal::BrokerRecipient;
use cloister_sign::{SigningKey, VerifyingKey, unix_now};
use cloister_types::model::{LicenceTerms, ModelFormat, ModelManifest, TensorSpec};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::testbed::write_secret;

/// Models larger than this get a progress bar (on a terminal).
const PROGRESS_THRESHOLD: u64 = 16 << 20;

/// Files of a model directory that are never imported: other frameworks' copies of the weights.
const SKIPPED_EXTENSIONS: &[&str] =
    &["bin", "pt", "pth", "ckpt", "h5", "msgpack", "ot", "onnx", "gguf", "tflite", "pb"];

/// `cloister keygen --signing`: a party signing key (ES256, or SM2 for a ShangMi deployment),
/// e.g. a model owner's.
pub fn keygen_signing(
    secret: &Path,
    public: &Path,
    suite: cloister_sign::SignatureSuite,
) -> Result<()> {
    crate::testbed::refuse_overwrite(&[secret, public])?;
    let key = cloister_sign::AnySigningKey::generate(suite)?;
    write_secret(secret, format!("{}\n", &*key.to_text()).as_bytes())?;
    std::fs::write(public, format!("{}\n", key.public_key()))
        .with_context(|| format!("writing {}", public.display()))?;
    eprintln!("public key: {}", key.public_key());
    Ok(())
}

/// What `cloister model import` was asked.
pub struct ImportArgs {
    /// The model file or directory.
    pub path: PathBuf,
    /// Model name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The owner's signing key file.
    pub owner_key: PathBuf,
    /// The key-broker recipient (file, or the text itself).
    pub recipient: String,
    /// `onnx`, `gguf` or `safetensors`; detected when `None`.
    pub format: Option<String>,
    /// Licence name.
    pub licence: Option<String>,
    /// Weights never leave an enclave.
    pub no_weight_export: bool,
    /// Further terms.
    pub terms: Vec<String>,
}

/// Opens the repository at `location`.
pub fn open_repository(location: &str) -> Result<Repository> {
    Ok(Repository::open(location)?)
}

/// Splits `NAME@VERSION`.
pub fn parse_model_id(id: &str) -> Result<(&str, &str)> {
    match id.split_once('@') {
        Some((name, version)) if !name.is_empty() && !version.is_empty() => Ok((name, version)),
        _ => bail!("{id:?} is not NAME@VERSION"),
    }
}

/// Reads a text argument that is either the text itself (starting with `prefix`) or a file
/// holding it.
pub(crate) fn text_or_file(value: &str, prefix: &str) -> Result<String> {
    if value.trim_start().starts_with(prefix) {
        return Ok(value.trim().to_owned());
    }
    let text = std::fs::read_to_string(value).with_context(|| format!("reading {value}"))?;
    Ok(text.trim().to_owned())
}

/// The format of `path`: a directory is safetensors, otherwise the extension decides.
pub fn detect_format(path: &Path, given: Option<&str>) -> Result<ModelFormat> {
    if let Some(given) = given {
        return match given {
            "onnx" => Ok(ModelFormat::Onnx),
            "gguf" => Ok(ModelFormat::Gguf),
            "safetensors" => Ok(ModelFormat::Safetensors),
            other => bail!("--format {other:?}: use onnx, gguf or safetensors"),
        };
    }
    if path.is_dir() {
        return Ok(ModelFormat::Safetensors);
    }
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("onnx") => Ok(ModelFormat::Onnx),
        Some("gguf") => Ok(ModelFormat::Gguf),
        _ => bail!(
            "cannot tell the format of {} from its name: give --format onnx|gguf|safetensors",
            path.display()
        ),
    }
}

/// Reads a model's files: one file becomes `model.onnx` / `model.gguf`; a directory gives every
/// regular file below it (relative, `/`-separated), minus hidden ones and other frameworks'
/// weight files.
pub fn read_model_files(path: &Path, format: ModelFormat) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    match format {
        ModelFormat::Onnx | ModelFormat::Gguf => {
            if path.is_dir() {
                bail!("{} is a directory; a {format} model is one file", path.display());
            }
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            files.insert(format!("model.{}", format.as_str()), bytes);
        }
        ModelFormat::Safetensors => {
            if !path.is_dir() {
                bail!(
                    "{} is not a directory; a safetensors model is a directory with config.json, \
                     tokenizer.json and .safetensors files",
                    path.display()
                );
            }
            collect_dir(path, "", &mut files)?;
        }
    }
    Ok(files)
}

fn collect_dir(dir: &Path, prefix: &str, files: &mut BTreeMap<String, Vec<u8>>) -> Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading directory {}", dir.display()))?
        .collect::<std::io::Result<Vec<_>>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            bail!("{}: file names must be UTF-8", entry.path().display());
        };
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symbolic links (Hugging Face caches link to blobs).
        let meta = std::fs::metadata(&path).with_context(|| format!("{}", path.display()))?;
        let relative = format!("{prefix}{name}");
        if meta.is_dir() {
            collect_dir(&path, &format!("{relative}/"), files)?;
        } else if meta.is_file() {
            let ext = Path::new(name).extension().and_then(|e| e.to_str()).unwrap_or("");
            if SKIPPED_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) {
                eprintln!("skipping {relative} (not part of a safetensors model)");
                continue;
            }
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            files.insert(relative, bytes);
        }
    }
    Ok(())
}

/// `cloister model import`.
pub async fn import(repo: &Repository, args: ImportArgs, json: bool) -> Result<()> {
    let owner = SigningKey::from_text(
        &std::fs::read_to_string(&args.owner_key)
            .with_context(|| format!("reading {}", args.owner_key.display()))?,
    )
    .with_context(|| {
        format!(
            "{} is not a signing key (make one with `cloister keygen --signing`)",
            args.owner_key.display()
        )
    })?;
    let recipient_text = text_or_file(&args.recipient, cloister_seal::BROKER_REFERENCE_PREFIX)?;
    let recipient = BrokerRecipient::from_text(&recipient_text).with_context(|| {
        format!(
            "--recipient {}: not a key-broker recipient (what `cloister key register` prints)",
            args.recipient
        )
    })?;
    let format = detect_format(&args.path, args.format.as_deref())?;
    let files = read_model_files(&args.path, format)?;
    let mut metadata = cloister_engine::inspect(format, &files)
        .with_context(|| format!("reading the metadata of {}", args.path.display()))?;
    if let Some(source) = args.path.file_name().and_then(|n| n.to_str()) {
        metadata.details.insert("source".to_owned(), source.to_owned());
    }
    let total: u64 = files.values().map(|b| b.len() as u64).sum();
    let model = NewModel {
        name: args.name,
        version: args.version,
        metadata,
        licence: LicenceTerms {
            licence: args.licence,
            no_weight_export: args.no_weight_export,
            terms: args.terms,
        },
        files: files.into_iter().map(|(p, b)| (p, Zeroizing::new(b))).collect(),
        recipient,
    };

    let bar = progress_bar(total);
    let mut finished: u64 = 0;
    let mut current: u64 = 0;
    let imported = repo
        .import_with_progress(model, &owner, unix_now(), &mut |event| match event {
            ImportProgress::Sealing { path, bytes } => {
                finished += current;
                current = bytes;
                bar.set_message(format!("sealing and storing {path}"));
                bar.set_position(finished);
            }
            ImportProgress::Uploaded { done, total, .. } => {
                let share = (current * done).checked_div(total).unwrap_or(current);
                bar.set_position(finished + share);
            }
        })
        .await;
    bar.finish_and_clear();
    let imported = imported?;
    let manifest = &imported.manifest;
    if json {
        println!("{}", serde_json::to_string(&ShowJson::new(manifest, None, None))?);
    } else {
        println!("imported {}", manifest.model_id());
        println!("{}", describe(manifest));
    }
    Ok(())
}

fn progress_bar(total: u64) -> ProgressBar {
    if total < PROGRESS_THRESHOLD || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} {bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// `cloister model list`.
pub async fn list(repo: &Repository, json: bool) -> Result<()> {
    let names = repo.list().await?;
    if json {
        let mut out = BTreeMap::new();
        for name in &names {
            out.insert(name.clone(), repo.versions(name).await?);
        }
        println!("{}", serde_json::to_string(&out)?);
    } else {
        for name in names {
            let versions = repo.versions(&name).await?;
            println!("{name}  {}", versions.join(" "));
        }
    }
    Ok(())
}

/// `cloister model versions NAME`.
pub async fn versions(repo: &Repository, name: &str, json: bool) -> Result<()> {
    let versions = repo.versions(name).await?;
    if versions.is_empty() {
        bail!("model {name} has no versions in {}", repo.location());
    }
    if json {
        println!("{}", serde_json::to_string(&versions)?);
    } else {
        for version in versions {
            println!("{version}");
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct ShowJson<'a> {
    model: String,
    digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_pinned: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sealed_files_checked: Option<usize>,
    manifest: &'a ModelManifest,
}

impl<'a> ShowJson<'a> {
    fn new(manifest: &'a ModelManifest, pinned: Option<bool>, checked: Option<usize>) -> Self {
        ShowJson {
            model: manifest.model_id(),
            digest: manifest.digest.to_string(),
            owner_pinned: pinned,
            sealed_files_checked: checked,
            manifest,
        }
    }
}

/// `cloister model show NAME@VERSION`: verifies the manifest (with `owner` when given, otherwise
/// with the key the manifest names, which only proves it is intact) and every sealed object's
/// digest, then prints the metadata.
pub async fn show(repo: &Repository, id: &str, owner: Option<&str>, json: bool) -> Result<()> {
    let (name, version) = parse_model_id(id)?;
    let (key, pinned) = match owner {
        Some(owner) => {
            let text = text_or_file(owner, "cloister-es256:")?;
            let key = VerifyingKey::from_text(&text)
                .with_context(|| format!("--owner {owner}: not a public signing key"))?;
            (key, true)
        }
        None => {
            let named = peek_manifest(&repo.manifest(name, version).await?)?.owner;
            let key = VerifyingKey::from_text(&named)
                .with_context(|| format!("the manifest of {id} names an unusable owner key"))?;
            eprintln!(
                "note: the owner is not pinned; the manifest is checked against the key it names \
                 ({named}). Give --owner to check who signed it."
            );
            (key, false)
        }
    };
    let verified = repo.verified_manifest(name, version, &key, unix_now()).await?;
    let sealed = repo.fetch_sealed(&verified).await?;
    let manifest = verified.manifest();
    if json {
        let out = ShowJson::new(manifest, Some(pinned), Some(sealed.len()));
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!("{}", manifest.model_id());
        println!(
            "  owner          {} ({})",
            manifest.owner,
            if pinned { "pinned with --owner" } else { "as the manifest names it, not pinned" }
        );
        println!("  signed at      {}", crate::serving::rfc3339(verified.issued_at()));
        println!("{}", describe(manifest));
        println!(
            "  integrity      signature verified; all {} sealed files match the manifest",
            sealed.len()
        );
    }
    Ok(())
}

/// `cloister model delete NAME@VERSION`.
pub async fn delete(repo: &Repository, id: &str) -> Result<()> {
    let (name, version) = parse_model_id(id)?;
    repo.delete(name, version).await?;
    println!("deleted {id} (the version will not be reused)");
    Ok(())
}

fn shape(spec: &TensorSpec) -> String {
    let dims: Vec<String> =
        spec.shape.iter().map(|d| d.map_or_else(|| "?".to_owned(), |n| n.to_string())).collect();
    format!("{} {} [{}]", spec.name, spec.dtype, dims.join(","))
}

fn human_count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{n} ({:.1}K)", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{n} ({:.1}M)", n as f64 / 1e6),
        _ => format!("{n} ({:.2}B)", n as f64 / 1e9),
    }
}

/// The manifest's content as indented lines.
fn describe(m: &ModelManifest) -> String {
    let md = &m.metadata;
    let mut lines = vec![
        format!("  digest         {}", m.digest),
        format!("  format         {}", md.format),
        format!(
            "  task           {}",
            serde_json::to_value(md.task)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        ),
        format!("  architecture   {}", md.architecture),
        format!("  parameters     {}", human_count(md.parameter_count)),
    ];
    if let Some(n) = md.context_length {
        lines.push(format!("  context        {n} tokens"));
    }
    if let Some(n) = md.vocab_size {
        lines.push(format!("  vocabulary     {n} tokens"));
    }
    if let Some(n) = md.hidden_size {
        lines.push(format!("  hidden size    {n}"));
    }
    if let Some(t) = &md.chat_template {
        lines.push(format!("  chat template  {} characters", t.chars().count()));
    }
    for input in &md.inputs {
        lines.push(format!("  input          {}", shape(input)));
    }
    for output in &md.outputs {
        lines.push(format!("  output         {}", shape(output)));
    }
    for (key, value) in &md.details {
        lines.push(format!("  {key:<14} {value}"));
    }
    let licence = &m.licence;
    lines.push(format!(
        "  licence        {}{}",
        licence.licence.as_deref().unwrap_or("(none stated)"),
        if licence.no_weight_export { "; weights never leave an enclave" } else { "" }
    ));
    for term in &licence.terms {
        lines.push(format!("  term           {term}"));
    }
    lines.push(format!("  sealed to      {}", m.sealed_to));
    for file in &m.files {
        lines.push(format!(
            "  file           {}  {} bytes  sha256 {}",
            file.path, file.size, file.sha256
        ));
    }
    lines.join("\n")
}
