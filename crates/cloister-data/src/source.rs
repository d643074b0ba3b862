//! The crate's file system access, in one place because ingest is file-based: opening inputs
//! (hashing them as they are read), telling their format, walking document and image folders
//! (sorted, links never followed), creating the data set directory and its shards, and reading
//! a data set back with every shard's digest checked. Everything else works on `Read`, `Write`
//! and bytes.

use std::cell::RefCell;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use sha2::{Digest as _, Sha256};

use crate::columnar::ColumnarReader;
use crate::error::{DataError, Problem};
pub use crate::images::ImageLimits;
use crate::images::inspect_image;
use crate::ingest::{DATASET_FILE, DATASET_VERSION, Dataset, Format, Progress, RecordValues};
use crate::records::{Delimited, DelimitedReader, JsonLinesReader, RecordReader};
use crate::schema::{ColumnType, Field, Value};
use crate::shard::{ShardInfo, ShardStore};

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The data set directory, where shards are created.
#[derive(Debug)]
pub struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    /// Creates `dir` (and its parents) or takes it if it exists and is empty.
    pub fn create(dir: &Path) -> Result<Self, DataError> {
        fs::create_dir_all(dir).map_err(|error| DataError::io(dir, error))?;
        let mut entries = fs::read_dir(dir).map_err(|error| DataError::io(dir, error))?;
        if entries.next().is_some() {
            return Err(DataError::OutputNotEmpty(dir.to_owned()));
        }
        Ok(Self { dir: dir.to_owned() })
    }
}

impl ShardStore for DirStore {
    type Writer = BufWriter<File>;

    fn create(&mut self, name: &str) -> Result<Self::Writer, DataError> {
        let path = self.dir.join(name);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|error| DataError::io(&path, error))?;
        Ok(BufWriter::with_capacity(1 << 20, file))
    }
}

#[derive(Default)]
struct Counted {
    hash: Sha256,
    bytes: u64,
}

/// The digest and size of an input, gathered as its reader reads it (or computed beforehand
/// for the formats read with seeks).
pub struct Tally {
    counted: Rc<RefCell<Counted>>,
    size: Option<u64>,
    done: Option<(String, u64)>,
}

impl Tally {
    /// The input's size, when known.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.done.as_ref().map_or_else(|| self.counted.borrow().bytes, |(_, bytes)| *bytes)
    }

    /// The digest and size, once the reader is done: the whole file must have been read.
    pub fn finish(self, path: &Path) -> Result<(String, u64), DataError> {
        if let Some(done) = self.done {
            return Ok(done);
        }
        let counted = self.counted.take();
        if let Some(size) = self.size
            && size != counted.bytes
        {
            return Err(DataError::Input(format!(
                "{}: read {} of its {size} bytes (did it change while being read?)",
                path.display(),
                counted.bytes
            )));
        }
        Ok((hex::encode(counted.hash.finalize()), counted.bytes))
    }
}

struct HashingReader<R> {
    inner: R,
    counted: Rc<RefCell<Counted>>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        let mut counted = self.counted.borrow_mut();
        counted.hash.update(buf.get(..read).unwrap_or_default());
        counted.bytes += read as u64;
        Ok(read)
    }
}

fn open_hashed(path: &Path) -> Result<(HashingReader<File>, Tally), DataError> {
    let file = File::open(path).map_err(|error| DataError::io(path, error))?;
    let size = file.metadata().ok().filter(fs::Metadata::is_file).map(|meta| meta.len());
    let counted = Rc::new(RefCell::new(Counted::default()));
    let tally = Tally { counted: counted.clone(), size, done: None };
    Ok((HashingReader { inner: file, counted }, tally))
}

/// A CSV or TSV input.
pub fn open_delimited(
    path: &Path,
    layout: Delimited,
) -> Result<(Box<dyn RecordReader>, Tally), DataError> {
    let (reader, tally) = open_hashed(path)?;
    let reader = DelimitedReader::new(reader, layout, &path.display().to_string())?;
    Ok((Box::new(reader), tally))
}

/// A JSON-lines input.
pub fn open_json_lines(path: &Path) -> Result<(Box<dyn RecordReader>, Tally), DataError> {
    let (reader, tally) = open_hashed(path)?;
    Ok((Box::new(JsonLinesReader::new(reader, &path.display().to_string())), tally))
}

/// Hashes a whole file (for inputs read with seeks, before they are read).
fn file_digest(path: &Path, progress: &dyn Progress) -> Result<Tally, DataError> {
    let (mut reader, tally) = open_hashed(path)?;
    progress.start(path, tally.size());
    let mut buffer = vec![0_u8; 1 << 20];
    loop {
        let read = reader.read(&mut buffer).map_err(|error| DataError::io(path, error))?;
        if read == 0 {
            break;
        }
        progress.position(tally.bytes());
    }
    drop(reader);
    let size = tally.size();
    let done = tally.finish(path)?;
    Ok(Tally { counted: Rc::default(), size, done: Some(done) })
}

/// A Parquet input; its digest is taken in a first pass.
pub fn open_parquet(
    path: &Path,
    progress: &dyn Progress,
) -> Result<(Box<dyn RecordReader>, Tally), DataError> {
    let tally = file_digest(path, progress)?;
    let file = File::open(path).map_err(|error| DataError::io(path, error))?;
    Ok((Box::new(ColumnarReader::parquet(file, &path.display().to_string())?), tally))
}

/// An Arrow IPC input (file or stream); its digest is taken in a first pass.
pub fn open_arrow(
    path: &Path,
    progress: &dyn Progress,
) -> Result<(Box<dyn RecordReader>, Tally), DataError> {
    let tally = file_digest(path, progress)?;
    let file = File::open(path).map_err(|error| DataError::io(path, error))?;
    let reader = io::BufReader::new(file);
    Ok((Box::new(ColumnarReader::arrow(reader, &path.display().to_string())?), tally))
}

fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".png", ".jpg", ".jpeg"].iter().any(|extension| lower.ends_with(extension))
}

/// Tells the inputs' format: from the extension of files, from the content of folders (all
/// images: `images`; no images: `text`; both: refused). Every input must have the same one.
pub fn detect_format(inputs: &[PathBuf]) -> Result<Format, DataError> {
    let mut found: Option<Format> = None;
    if inputs.is_empty() {
        return Err(DataError::Input("no inputs".into()));
    }
    for path in inputs {
        let format = if path.is_dir() {
            let entries = list_folder(path)?;
            let images = entries.iter().filter(|entry| is_image_name(&entry.relative)).count();
            if images == entries.len() && images > 0 {
                Format::Images
            } else if images == 0 {
                Format::Text
            } else {
                return Err(DataError::Input(format!(
                    "{}: holds both images and other files; say --format text or images",
                    path.display()
                )));
            }
        } else {
            let extension = path
                .extension()
                .and_then(|extension| extension.to_str())
                .map(str::to_ascii_lowercase)
                .unwrap_or_default();
            match extension.as_str() {
                "csv" => Format::Csv,
                "tsv" | "tab" => Format::Tsv,
                "jsonl" | "ndjson" => Format::Jsonl,
                "parquet" | "pq" => Format::Parquet,
                "arrow" | "feather" | "ipc" | "arrows" => Format::Arrow,
                _ => {
                    return Err(DataError::Input(format!(
                        "{}: cannot tell the format from the name; say --format",
                        path.display()
                    )));
                }
            }
        };
        match found {
            None => found = Some(format),
            Some(first) if first != format => {
                return Err(DataError::Input(format!(
                    "{} is {format:?} but the first input is {first:?}",
                    path.display()
                )));
            }
            Some(_) => {}
        }
    }
    found.ok_or_else(|| DataError::Input("no inputs".into()))
}

/// A folder entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its path.
    pub path: PathBuf,
    /// Its path below the folder, `/`-separated.
    pub relative: String,
    /// Its size (0 for what is not a regular file).
    pub size: u64,
    /// Whether it is a regular file (anything else is rejected, never followed).
    pub regular: bool,
}

/// Every entry below `folder` but directories, depth first, sorted by relative path.
pub fn list_folder(folder: &Path) -> Result<Vec<Entry>, DataError> {
    let mut entries = Vec::new();
    let mut pending = vec![(folder.to_owned(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let listing = fs::read_dir(&dir).map_err(|error| DataError::io(&dir, error))?;
        for item in listing {
            let item = item.map_err(|error| DataError::io(&dir, error))?;
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            let relative = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let meta = fs::symlink_metadata(&path).map_err(|error| DataError::io(&path, error))?;
            if meta.is_dir() {
                pending.push((path, relative));
            } else {
                let regular = meta.is_file();
                let size = if regular { meta.len() } else { 0 };
                entries.push(Entry { path, relative, size, regular });
            }
        }
    }
    entries.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(entries)
}

/// The columns of a documents data set.
pub fn document_fields() -> Vec<Field> {
    let field = |name: &str, ty| Field { name: name.into(), ty };
    vec![
        field("path", ColumnType::String),
        field("text", ColumnType::String),
        field("bytes", ColumnType::Int),
        field("sha256", ColumnType::String),
    ]
}

/// The columns of an images data set.
pub fn image_fields() -> Vec<Field> {
    let field = |name: &str, ty| Field { name: name.into(), ty };
    vec![
        field("path", ColumnType::String),
        field("width", ColumnType::Int),
        field("height", ColumnType::Int),
        field("channels", ColumnType::Int),
        field("bytes", ColumnType::Int),
        field("sha256", ColumnType::String),
    ]
}

/// A folder entry read: its digest (when it could be read) and its record or its problem.
pub(crate) struct Outcome {
    pub(crate) sha256: Option<String>,
    pub(crate) values: RecordValues,
}

fn read_limited(entry: &Entry, limit: u64) -> Result<Result<Vec<u8>, Problem>, DataError> {
    if !entry.regular {
        return Ok(Err(Problem::NotAFile));
    }
    if entry.size > limit {
        return Ok(Err(Problem::TooLarge { size: entry.size, limit }));
    }
    let mut bytes = Vec::new();
    File::open(&entry.path)
        .and_then(|file| file.take(limit.saturating_add(1)).read_to_end(&mut bytes))
        .map_err(|error| DataError::io(&entry.path, error))?;
    if bytes.len() as u64 > limit {
        return Ok(Err(Problem::TooLarge { size: bytes.len() as u64, limit }));
    }
    Ok(Ok(bytes))
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A text document: the whole file, which must be UTF-8 and at most `limit` bytes.
pub(crate) fn read_document(entry: &Entry, limit: u64) -> Result<Outcome, DataError> {
    let bytes = match read_limited(entry, limit)? {
        Ok(bytes) => bytes,
        Err(problem) => return Ok(Outcome { sha256: None, values: Err((None, problem)) }),
    };
    let sha256 = sha256_hex(&bytes);
    let size = bytes.len() as u64;
    let values = match String::from_utf8(bytes) {
        Ok(text) => Ok(vec![
            Value::Str(entry.relative.clone()),
            Value::Str(text),
            Value::Int(to_i64(size)),
            Value::Str(sha256.clone()),
        ]),
        Err(error) => {
            Err((Some("text"), Problem::InvalidUtf8 { offset: error.utf8_error().valid_up_to() }))
        }
    };
    Ok(Outcome { sha256: Some(sha256), values })
}

/// An image: checked and decoded under `limits` (files over `max_alloc` bytes are refused
/// unread).
pub(crate) fn read_image(entry: &Entry, limits: &ImageLimits) -> Result<Outcome, DataError> {
    let bytes = match read_limited(entry, limits.max_alloc)? {
        Ok(bytes) => bytes,
        Err(problem) => return Ok(Outcome { sha256: None, values: Err((None, problem)) }),
    };
    let sha256 = sha256_hex(&bytes);
    let values = inspect_image(&bytes, limits)
        .map(|info| {
            vec![
                Value::Str(entry.relative.clone()),
                Value::Int(info.width.into()),
                Value::Int(info.height.into()),
                Value::Int(info.channels.into()),
                Value::Int(to_i64(bytes.len() as u64)),
                Value::Str(sha256.clone()),
            ]
        })
        .map_err(|problem| (None, problem));
    Ok(Outcome { sha256: Some(sha256), values })
}

/// Writes `dataset.json` (through a temporary file renamed into place).
pub fn write_dataset(dir: &Path, dataset: &Dataset) -> Result<(), DataError> {
    let mut text = serde_json::to_vec_pretty(dataset)
        .map_err(|error| DataError::Dataset(format!("encoding dataset.json: {error}")))?;
    text.push(b'\n');
    let temporary = dir.join(format!("{DATASET_FILE}.partial"));
    fs::write(&temporary, &text).map_err(|error| DataError::io(&temporary, error))?;
    let path = dir.join(DATASET_FILE);
    fs::rename(&temporary, &path).map_err(|error| DataError::io(&path, error))
}

/// Reads a data set directory's `dataset.json`.
pub fn read_dataset(dir: &Path) -> Result<Dataset, DataError> {
    read_dataset_with_digest(dir).map(|(dataset, _)| dataset)
}

/// Writes `value` as pretty JSON to `name` in `dir` (through a temporary file renamed into
/// place): the files that travel beside `dataset.json`. Returns the SHA-256 (hex) of the bytes
/// written.
pub fn write_json(
    dir: &Path,
    name: &str,
    value: &impl serde::Serialize,
) -> Result<String, DataError> {
    let mut text = serde_json::to_vec_pretty(value)
        .map_err(|error| DataError::Dataset(format!("encoding {name}: {error}")))?;
    text.push(b'\n');
    let temporary = dir.join(format!("{name}.partial"));
    fs::write(&temporary, &text).map_err(|error| DataError::io(&temporary, error))?;
    let path = dir.join(name);
    fs::rename(&temporary, &path).map_err(|error| DataError::io(&path, error))?;
    Ok(sha256_hex(&text))
}

/// Reads a data set directory's `dataset.json`, with the SHA-256 (hex) of the bytes it was
/// parsed from: what a derived data set names as its input.
pub fn read_dataset_with_digest(dir: &Path) -> Result<(Dataset, String), DataError> {
    let path = dir.join(DATASET_FILE);
    let text = fs::read(&path).map_err(|error| DataError::io(&path, error))?;
    let digest = sha256_hex(&text);
    let dataset: Dataset = serde_json::from_slice(&text)
        .map_err(|error| DataError::Dataset(format!("{}: {error}", path.display())))?;
    if dataset.version != DATASET_VERSION {
        return Err(DataError::Dataset(format!(
            "{}: version {} (this build reads {DATASET_VERSION})",
            path.display(),
            dataset.version
        )));
    }
    Ok((dataset, digest))
}

/// The path of a shard in `dir`; its name must be a plain file name.
fn shard_path(dir: &Path, shard: &ShardInfo) -> Result<PathBuf, DataError> {
    let plain = Path::new(&shard.file).file_name().is_some_and(|name| name == shard.file.as_str());
    if !plain {
        return Err(DataError::Dataset(format!("shard name {:?} is not a file name", shard.file)));
    }
    Ok(dir.join(&shard.file))
}

/// Reads a data set directory's `dataset.json` and checks every shard's size and SHA-256
/// against it, before anything is done with the data set (sealing it); returns the data set
/// with the SHA-256 (hex) of its `dataset.json` bytes.
pub fn verify_dataset(dir: &Path) -> Result<(Dataset, String), DataError> {
    let (dataset, digest) = read_dataset_with_digest(dir)?;
    for shard in &dataset.shards {
        drop(open_shard(dir, shard)?);
    }
    Ok((dataset, digest))
}

/// Opens a shard without hashing it first, for a reader that hashes the bytes it reads and
/// compares them with `shard.sha256` itself (sealing does, so that the digest it records is
/// that of the bytes it sealed, even if the file changed after [`verify_dataset`]); the shard's
/// name must be a plain file name. Returns the file and its path.
pub fn open_shard_to_hash(dir: &Path, shard: &ShardInfo) -> Result<(File, PathBuf), DataError> {
    let path = shard_path(dir, shard)?;
    let file = File::open(&path).map_err(|error| DataError::io(&path, error))?;
    Ok((file, path))
}

/// Opens a shard after checking its size and SHA-256 against `dataset.json`; the shard's name
/// must be a plain file name.
pub fn open_shard(dir: &Path, shard: &ShardInfo) -> Result<File, DataError> {
    let path = shard_path(dir, shard)?;
    let tally = file_digest(&path, &crate::ingest::Silent)?;
    let (sha256, bytes) = tally.finish(&path)?;
    if sha256 != shard.sha256 || bytes != shard.bytes {
        return Err(DataError::Dataset(format!(
            "{}: digest {sha256} ({bytes} bytes) is not the {} ({} bytes) dataset.json names",
            path.display(),
            shard.sha256,
            shard.bytes
        )));
    }
    File::open(&path).map_err(|error| DataError::io(&path, error))
}
