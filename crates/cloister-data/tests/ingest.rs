//! Ingest of every format into a data set, read back from its Parquet shards; every bad-input
//! class as an error naming file, row and column, and as a quarantined reject with the good rows
//! kept; schema overrides; digest stability; scikit-learn's breast-cancer table.

// Helpers in integration tests are not #[test] functions; a failed setup should panic loudly.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray as _;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Float32Array, Int32Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field as ArrowField, Schema};
use cloister_data::{
    ColumnType, DataError, Dataset, Format, IngestOptions, Overrides, Problem, Rejects, Silent,
    ingest,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sha2::{Digest as _, Sha256};

fn run(inputs: &[PathBuf], out: &Path, options: &IngestOptions) -> Result<Dataset, DataError> {
    ingest(inputs, out, options, Rejects::refuse(), &Silent)
}

/// Ingests with a reject file; returns the data set and the reject lines.
fn run_quarantined(
    inputs: &[PathBuf],
    out: &Path,
    options: &IngestOptions,
) -> (Dataset, Vec<serde_json::Value>) {
    let mut rejects = Vec::new();
    let dataset = ingest(inputs, out, options, Rejects::quarantine(&mut rejects), &Silent).unwrap();
    let lines = String::from_utf8(rejects)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (dataset, lines)
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every shard's batches, in order.
fn batches(out: &Path, dataset: &Dataset) -> Vec<RecordBatch> {
    dataset
        .shards
        .iter()
        .flat_map(|shard| {
            let file = fs::File::open(out.join(&shard.file)).unwrap();
            ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One column of the whole data set, each value as text (`null` for a missing one).
fn column(out: &Path, dataset: &Dataset, name: &str) -> Vec<String> {
    let mut values = Vec::new();
    for batch in batches(out, dataset) {
        let array = batch.column_by_name(name).unwrap();
        for index in 0..array.len() {
            values.push(if array.is_null(index) {
                "null".to_owned()
            } else {
                match array.data_type() {
                    DataType::Int64 => array.as_primitive::<Int64Type>().value(index).to_string(),
                    DataType::Float64 => {
                        array.as_primitive::<Float64Type>().value(index).to_string()
                    }
                    DataType::Boolean => array.as_boolean().value(index).to_string(),
                    DataType::Utf8 => array.as_string::<i32>().value(index).to_owned(),
                    other => panic!("unexpected {other}"),
                }
            });
        }
    }
    values
}

fn types(dataset: &Dataset) -> Vec<(String, ColumnType)> {
    dataset.schema.iter().map(|f| (f.name.clone(), f.ty)).collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

const TABLE: &str = "id,score,member,name,note\n\
                     1,2.5,true,Ann,\n\
                     2,3,false,Bob,x\n\
                     3,,TRUE,\"Lee, Jr.\",\"two\nlines\"\n\
                     4,-1e3,false,Eve,y\n\
                     5,7.25,,Zed,z\n";

#[test]
fn csv_types_are_inferred_and_rows_are_sharded_with_digests() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "table.csv", TABLE.as_bytes());
    let out = dir.path().join("set");
    let options = IngestOptions { shard_rows: 2, ..IngestOptions::default() };
    let dataset = run(&[input], &out, &options).unwrap();
    assert_eq!(dataset.format, Format::Csv);
    assert_eq!(
        types(&dataset),
        [
            ("id".to_owned(), ColumnType::Int),
            ("score".to_owned(), ColumnType::Float),
            ("member".to_owned(), ColumnType::Bool),
            ("name".to_owned(), ColumnType::String),
            ("note".to_owned(), ColumnType::String),
        ]
    );
    assert_eq!(dataset.rows, 5);
    assert_eq!(dataset.shards.iter().map(|s| s.rows).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(column(&out, &dataset, "id"), ["1", "2", "3", "4", "5"]);
    assert_eq!(column(&out, &dataset, "score"), ["2.5", "3", "null", "-1000", "7.25"]);
    assert_eq!(column(&out, &dataset, "member"), ["true", "false", "true", "false", "null"]);
    assert_eq!(column(&out, &dataset, "name")[2], "Lee, Jr.");
    assert_eq!(column(&out, &dataset, "note"), ["null", "x", "two\nlines", "y", "z"]);
    // Digests: the input's bytes, each shard's file.
    assert_eq!(dataset.inputs[0].sha256, sha256(TABLE.as_bytes()));
    assert_eq!(dataset.inputs[0].bytes, TABLE.len() as u64);
    for shard in &dataset.shards {
        let bytes = fs::read(out.join(&shard.file)).unwrap();
        assert_eq!(shard.sha256, sha256(&bytes));
        assert_eq!(shard.bytes, bytes.len() as u64);
    }
    // Statistics.
    let score = &dataset.columns[1];
    assert_eq!((score.count, score.missing), (4, 1));
    assert_eq!((score.min, score.max), (Some(-1000.0), Some(7.25)));
    assert_eq!(dataset.columns[2].true_count, Some(2));
    assert_eq!(dataset.columns[3].max_length, Some(8));
    // dataset.json is what was returned.
    let written: Dataset =
        serde_json::from_slice(&fs::read(out.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(written.rows, dataset.rows);
    assert_eq!(written.shards, dataset.shards);
}

#[test]
fn tsv_is_read_with_tabs() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "t.tsv", b"a\tb\n1\thello, world\n2\tbye\n");
    let out = dir.path().join("set");
    let dataset = run(&[input], &out, &IngestOptions::default()).unwrap();
    assert_eq!(dataset.format, Format::Tsv);
    assert_eq!(column(&out, &dataset, "b"), ["hello, world", "bye"]);
    assert_eq!(dataset.schema[0].ty, ColumnType::Int);
}

#[test]
fn json_lines_take_keys_as_columns_and_json_types() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "r.jsonl",
        b"{\"n\": 1, \"x\": 1.5, \"s\": \"5\", \"ok\": true, \"tags\": [1, 2]}\n\
          \n\
          {\"n\": 2, \"x\": 2, \"s\": \"t\", \"ok\": null}\n",
    );
    let out = dir.path().join("set");
    let dataset = run(&[input], &out, &IngestOptions::default()).unwrap();
    assert_eq!(dataset.format, Format::Jsonl);
    let by_name: Vec<(String, ColumnType)> = types(&dataset);
    assert!(by_name.contains(&("n".into(), ColumnType::Int)));
    assert!(by_name.contains(&("x".into(), ColumnType::Float)));
    // A JSON string stays a string even when it reads as a number.
    assert!(by_name.contains(&("s".into(), ColumnType::String)));
    assert!(by_name.contains(&("ok".into(), ColumnType::Bool)));
    assert_eq!(column(&out, &dataset, "tags"), ["[1,2]", "null"]);
    assert_eq!(column(&out, &dataset, "ok"), ["true", "null"]);
    assert_eq!(column(&out, &dataset, "x"), ["1.5", "2"]);
}

fn arrow_batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        ArrowField::new("i", DataType::Int32, true),
        ArrowField::new("f", DataType::Float32, false),
        ArrowField::new("s", DataType::Utf8, true),
        ArrowField::new("b", DataType::Boolean, false),
        ArrowField::new("d", DataType::Date32, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from(vec![Some(1), None, Some(3)])),
        Arc::new(Float32Array::from(vec![1.0, 2.0, 3.5])),
        Arc::new(StringArray::from(vec![Some("a"), Some("b"), None])),
        Arc::new(BooleanArray::from(vec![true, false, true])),
        Arc::new(Date32Array::from(vec![0, 1, 19_000])),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

fn check_columnar(out: &Path, dataset: &Dataset) {
    assert_eq!(
        types(dataset),
        [
            ("i".to_owned(), ColumnType::Int),
            // Declared float: whole numbers do not narrow it to int.
            ("f".to_owned(), ColumnType::Float),
            ("s".to_owned(), ColumnType::String),
            ("b".to_owned(), ColumnType::Bool),
            ("d".to_owned(), ColumnType::String),
        ]
    );
    assert_eq!(column(out, dataset, "i"), ["1", "null", "3"]);
    assert_eq!(column(out, dataset, "f"), ["1", "2", "3.5"]);
    assert_eq!(column(out, dataset, "d"), ["1970-01-01", "1970-01-02", "2022-01-08"]);
}

#[test]
fn parquet_written_by_arrow_rs_is_ingested_with_its_types() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.parquet");
    let batch = arrow_batch();
    let mut writer =
        ArrowWriter::try_new(fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let out = dir.path().join("set");
    let dataset = run(std::slice::from_ref(&path), &out, &IngestOptions::default()).unwrap();
    assert_eq!(dataset.format, Format::Parquet);
    check_columnar(&out, &dataset);
    assert_eq!(dataset.inputs[0].sha256, sha256(&fs::read(&path).unwrap()));
}

#[test]
fn arrow_ipc_files_and_streams_are_ingested() {
    let dir = tempfile::tempdir().unwrap();
    let batch = arrow_batch();
    let file = dir.path().join("in.arrow");
    let mut writer =
        arrow_ipc::writer::FileWriter::try_new(fs::File::create(&file).unwrap(), &batch.schema())
            .unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    let out = dir.path().join("file-set");
    check_columnar(&out, &run(&[file], &out, &IngestOptions::default()).unwrap());

    let stream = dir.path().join("in.arrows");
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(
        fs::File::create(&stream).unwrap(),
        &batch.schema(),
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.finish().unwrap();
    let out = dir.path().join("stream-set");
    check_columnar(&out, &run(&[stream], &out, &IngestOptions::default()).unwrap());
}

#[test]
fn ragged_rows_are_an_error_naming_file_row_and_column_or_are_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "r.csv", b"a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,11,12\n");
    let error = run(std::slice::from_ref(&input), &dir.path().join("x"), &IngestOptions::default())
        .unwrap_err();
    let DataError::Record { at, problem } = &error else { panic!("{error}") };
    assert_eq!(at.file, input.display().to_string());
    assert_eq!((at.row, at.column.as_deref()), (3, Some("c")));
    assert_eq!(problem, &Problem::Ragged { expected: 3, found: 2 });
    let message = error.to_string();
    assert!(message.contains("r.csv, row 3, column c"), "{message}");
    // No dataset.json after a failed ingest.
    assert!(!dir.path().join("x/dataset.json").exists());

    let out = dir.path().join("set");
    let (dataset, rejects) = run_quarantined(&[input], &out, &IngestOptions::default());
    assert_eq!(dataset.rows, 2);
    assert_eq!(dataset.rejected, 2);
    assert_eq!(dataset.inputs[0].rejected, 2);
    assert_eq!(column(&out, &dataset, "a"), ["1", "10"]);
    assert_eq!(rejects.len(), 2);
    assert_eq!(rejects[0]["row"], 3);
    assert_eq!(rejects[0]["column"], "c");
    assert!(rejects[0]["reason"].as_str().unwrap().contains("expected 3 fields"));
    assert_eq!(rejects[1]["row"], 4);
    assert_eq!(rejects[1]["column"], "#4 (beyond the header)");
}

#[test]
fn invalid_utf8_names_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "u.csv", b"a,b\n1,ok\n2,bad\xff\n3,fine\n");
    let error = run(std::slice::from_ref(&input), &dir.path().join("x"), &IngestOptions::default())
        .unwrap_err();
    let DataError::Record { at, problem } = &error else { panic!("{error}") };
    assert_eq!((at.row, at.column.as_deref()), (3, Some("b")));
    assert_eq!(problem, &Problem::InvalidUtf8 { offset: 3 });

    let (dataset, rejects) =
        run_quarantined(&[input], &dir.path().join("set"), &IngestOptions::default());
    assert_eq!((dataset.rows, rejects.len()), (2, 1));
    assert!(rejects[0]["reason"].as_str().unwrap().contains("invalid UTF-8"));

    let lines = write(dir.path(), "u.jsonl", b"{\"a\": 1}\n{\"a\": \"\xc3\x28\"}\n");
    let error = run(&[lines], &dir.path().join("y"), &IngestOptions::default()).unwrap_err();
    let DataError::Record { at, problem } = &error else { panic!("{error}") };
    assert_eq!(at.row, 2);
    assert!(matches!(problem, Problem::InvalidUtf8 { .. }));
}

#[test]
fn a_type_change_after_the_inference_window_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "t.csv", b"n,s\n1,a\n2,b\n3,c\nfour,d\n5,e\n");
    let options = IngestOptions { window: 2, ..IngestOptions::default() };
    let error = run(std::slice::from_ref(&input), &dir.path().join("x"), &options).unwrap_err();
    let DataError::Record { at, problem } = &error else { panic!("{error}") };
    assert_eq!((at.row, at.column.as_deref()), (5, Some("n")));
    assert_eq!(problem, &Problem::TypeMismatch { expected: ColumnType::Int, value: "four".into() });

    let out = dir.path().join("set");
    let (dataset, rejects) = run_quarantined(std::slice::from_ref(&input), &out, &options);
    assert_eq!(column(&out, &dataset, "n"), ["1", "2", "3", "5"]);
    assert_eq!(rejects[0]["row"], 5);
    assert_eq!(rejects[0]["column"], "n");

    // With the whole file in the window, the column is text and nothing is rejected.
    let out = dir.path().join("wide");
    let dataset = run(&[input], &out, &IngestOptions::default()).unwrap();
    assert_eq!(dataset.schema[0].ty, ColumnType::String);

    // JSON lines: a key not seen in the window, and a line that is not an object.
    let lines = write(dir.path(), "k.jsonl", b"{\"a\": 1}\n{\"a\": 2, \"b\": 3}\n[1]\n");
    let options = IngestOptions { window: 1, ..IngestOptions::default() };
    let (dataset, rejects) = run_quarantined(&[lines], &dir.path().join("k"), &options);
    assert_eq!(dataset.rows, 1);
    assert_eq!(rejects[0]["column"], "b");
    assert_eq!(rejects[1]["row"], 3);
    assert!(rejects[1]["reason"].as_str().unwrap().contains("not an object"));
}

#[test]
fn schema_overrides_set_types_and_refuse_unknown_columns() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "o.csv", b"zip,amount,flag\n01234,5,true\n99999,6,false\n");
    let mut overrides = Overrides::from_schema_json(br#"{"zip": "string"}"#).unwrap();
    overrides.add_argument("amount=float").unwrap();
    let options = IngestOptions { overrides, ..IngestOptions::default() };
    let out = dir.path().join("set");
    let dataset = run(std::slice::from_ref(&input), &out, &options).unwrap();
    assert_eq!(dataset.schema[0].ty, ColumnType::String);
    assert_eq!(dataset.schema[1].ty, ColumnType::Float);
    // The leading zero survives as text.
    assert_eq!(column(&out, &dataset, "zip"), ["01234", "99999"]);

    let mut overrides = Overrides::default();
    overrides.add_argument("flag=int").unwrap();
    let options = IngestOptions { overrides, ..IngestOptions::default() };
    let error = run(std::slice::from_ref(&input), &dir.path().join("x"), &options).unwrap_err();
    assert!(matches!(error, DataError::Record { problem: Problem::TypeMismatch { .. }, .. }));

    let mut overrides = Overrides::default();
    overrides.add_argument("zipp=string").unwrap();
    let options = IngestOptions { overrides, ..IngestOptions::default() };
    let error = run(&[input], &dir.path().join("y"), &options).unwrap_err();
    assert!(matches!(error, DataError::Override(_)), "{error}");
}

#[test]
fn digests_are_stable_and_follow_the_content() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "s.csv", TABLE.as_bytes());
    let options = IngestOptions { shard_rows: 2, ..IngestOptions::default() };
    let first = dir.path().join("one");
    let second = dir.path().join("two");
    run(std::slice::from_ref(&input), &first, &options).unwrap();
    run(std::slice::from_ref(&input), &second, &options).unwrap();
    assert_eq!(
        fs::read(first.join("dataset.json")).unwrap(),
        fs::read(second.join("dataset.json")).unwrap()
    );
    assert_eq!(
        fs::read(first.join("shard-00000.parquet")).unwrap(),
        fs::read(second.join("shard-00000.parquet")).unwrap()
    );
    let changed = write(dir.path(), "s.csv", TABLE.replace("Eve", "Eva").as_bytes());
    let third = run(&[changed], &dir.path().join("three"), &options).unwrap();
    let one: Dataset =
        serde_json::from_slice(&fs::read(first.join("dataset.json")).unwrap()).unwrap();
    assert_ne!(one.inputs[0].sha256, third.inputs[0].sha256);
    assert_eq!(one.shards[0].sha256, third.shards[0].sha256);
    assert_ne!(one.shards[1].sha256, third.shards[1].sha256);
}

#[test]
fn inputs_must_agree_and_the_output_must_be_empty() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.csv", b"x,y\n1,2\n");
    let b = write(dir.path(), "b.csv", b"x,z\n1,2\n");
    let c = write(dir.path(), "c.csv", b"x,y\n3,4\n");
    let out = dir.path().join("set");
    let dataset = run(&[a.clone(), c], &out, &IngestOptions::default()).unwrap();
    assert_eq!((dataset.rows, dataset.inputs.len()), (2, 2));
    let error =
        run(&[a.clone(), b], &dir.path().join("ab"), &IngestOptions::default()).unwrap_err();
    assert!(matches!(error, DataError::ColumnsDiffer { .. }), "{error}");
    let error = run(std::slice::from_ref(&a), &out, &IngestOptions::default()).unwrap_err();
    assert!(matches!(error, DataError::OutputNotEmpty(_)), "{error}");
    let unknown = write(dir.path(), "data.txt", b"x\n");
    let error = run(&[unknown], &dir.path().join("u"), &IngestOptions::default()).unwrap_err();
    assert!(matches!(error, DataError::Input(_)), "{error}");
    let jsonl = write(dir.path(), "d.jsonl", b"{}\n");
    let error = run(&[a, jsonl], &dir.path().join("m"), &IngestOptions::default()).unwrap_err();
    assert!(matches!(error, DataError::Input(_)), "{error}");
}

#[test]
fn text_folders_become_one_record_per_document() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    fs::create_dir_all(docs.join("sub")).unwrap();
    fs::write(docs.join("b.txt"), "second").unwrap();
    fs::write(docs.join("a.md"), "first ü").unwrap();
    fs::write(docs.join("sub/c.txt"), "third").unwrap();
    let out = dir.path().join("set");
    let dataset = run(std::slice::from_ref(&docs), &out, &IngestOptions::default()).unwrap();
    assert_eq!(dataset.format, Format::Text);
    assert_eq!(column(&out, &dataset, "path"), ["a.md", "b.txt", "sub/c.txt"]);
    assert_eq!(column(&out, &dataset, "text"), ["first ü", "second", "third"]);
    assert_eq!(column(&out, &dataset, "bytes"), ["8", "6", "5"]);
    assert_eq!(column(&out, &dataset, "sha256")[1], sha256(b"second"));
    let listing = format!(
        "{}  a.md\n{}  b.txt\n{}  sub/c.txt\n",
        sha256("first ü".as_bytes()),
        sha256(b"second"),
        sha256(b"third")
    );
    assert_eq!(dataset.inputs[0].sha256, sha256(listing.as_bytes()));

    fs::write(docs.join("bad.txt"), b"caf\xe9").unwrap();
    let error = run(std::slice::from_ref(&docs), &dir.path().join("x"), &IngestOptions::default())
        .unwrap_err();
    let DataError::Record { at, problem } = &error else { panic!("{error}") };
    assert!(at.file.ends_with("docs/bad.txt"), "{}", at.file);
    assert_eq!((at.row, at.column.as_deref()), (3, Some("text")));
    assert_eq!(problem, &Problem::InvalidUtf8 { offset: 3 });
    let (dataset, rejects) =
        run_quarantined(&[docs], &dir.path().join("q"), &IngestOptions::default());
    assert_eq!((dataset.rows, dataset.rejected, rejects.len()), (3, 1, 1));
}

/// CRC-32 (IEEE) for hand-made PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffff_u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    chunk.extend_from_slice(&body);
    chunk.extend_from_slice(&crc32(&body).to_be_bytes());
    chunk
}

/// A PNG whose header declares 100000 × 100000 grey pixels (10 GB decoded) in a few bytes.
fn png_bomb() -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = 100_000_u32.to_be_bytes().to_vec();
    header.extend_from_slice(&100_000_u32.to_be_bytes());
    header.extend_from_slice(&[8, 0, 0, 0, 0]);
    png.extend(png_chunk(b"IHDR", &header));
    // A zlib stream of a few zero bytes: decoding it would need all 10 GB of rows.
    png.extend(png_chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

#[test]
fn image_folders_record_dimensions_and_refuse_bombs_and_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    fs::create_dir_all(&images).unwrap();
    image::RgbImage::new(7, 5).save(images.join("a.png")).unwrap();
    image::GrayImage::new(16, 8).save(images.join("b.jpg")).unwrap();
    image::RgbaImage::new(3, 3).save(images.join("c.png")).unwrap();
    let out = dir.path().join("set");
    let dataset = run(std::slice::from_ref(&images), &out, &IngestOptions::default()).unwrap();
    assert_eq!(dataset.format, Format::Images);
    assert_eq!(column(&out, &dataset, "width"), ["7", "16", "3"]);
    assert_eq!(column(&out, &dataset, "height"), ["5", "8", "3"]);
    assert_eq!(column(&out, &dataset, "channels"), ["3", "1", "4"]);
    let a = fs::read(images.join("a.png")).unwrap();
    assert_eq!(column(&out, &dataset, "sha256")[0], sha256(&a));

    fs::write(images.join("d.png"), png_bomb()).unwrap();
    let error =
        run(std::slice::from_ref(&images), &dir.path().join("x"), &IngestOptions::default())
            .unwrap_err();
    let DataError::Record { at, problem } = &error else { panic!("{error}") };
    assert!(at.file.ends_with("images/d.png"));
    assert_eq!(at.row, 4);
    assert!(matches!(problem, Problem::ImageTooLarge { width: 100_000, height: 100_000, .. }));

    fs::write(images.join("e.png"), a.get(..a.len() / 2).unwrap()).unwrap();
    fs::write(images.join("f.jpg"), b"not a jpeg at all").unwrap();
    let out = dir.path().join("q");
    let (dataset, rejects) = run_quarantined(&[images], &out, &IngestOptions::default());
    assert_eq!((dataset.rows, dataset.rejected), (3, 3));
    assert_eq!(column(&out, &dataset, "path"), ["a.png", "b.jpg", "c.png"]);
    assert!(rejects[0]["reason"].as_str().unwrap().contains("decompression bomb"));
    assert!(rejects[1]["reason"].as_str().unwrap().contains("unreadable image"));
    assert!(rejects[2]["file"].as_str().unwrap().ends_with("f.jpg"));
}

fn breast_cancer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/breast_cancer.csv")
}

#[test]
fn scikit_learns_breast_cancer_table() {
    let dir = tempfile::tempdir().unwrap();
    // Its first line is scikit-learn's `569,30,malignant,benign`, not a header: as a plain CSV the
    // first data row is ragged against it.
    let error =
        run(&[breast_cancer()], &dir.path().join("x"), &IngestOptions::default()).unwrap_err();
    let DataError::Record { at, problem } = &error else { panic!("{error}") };
    assert_eq!(at.row, 2);
    assert_eq!(problem, &Problem::Ragged { expected: 4, found: 31 });

    let options = IngestOptions { skip_lines: 1, header: false, ..IngestOptions::default() };
    let out = dir.path().join("set");
    let dataset = run(&[breast_cancer()], &out, &options).unwrap();
    assert_eq!(dataset.rows, 569);
    assert_eq!(dataset.schema.len(), 31);
    assert!(dataset.schema[..30].iter().all(|f| f.ty == ColumnType::Float));
    assert_eq!(dataset.schema[30].ty, ColumnType::Int);
    assert_eq!(dataset.schema[0].name, "column_1");
    // The pinned digest of scripts/fetch-assets.sh.
    assert_eq!(
        dataset.inputs[0].sha256,
        "fed3eb72d0575ef6192293f5093c6e801b1476b577d0386bf4455504522172ed"
    );
    // 357 benign (1), 212 malignant (0).
    let label = &dataset.columns[30];
    assert_eq!((label.min, label.max), (Some(0.0), Some(1.0)));
    assert!((label.mean.unwrap() - 357.0 / 569.0).abs() < 1e-12);
    assert_eq!(column(&out, &dataset, "column_1")[0], "17.99");
}
