//! Unit tests of the COPY decoder: each format, records split across payloads, and errors
//! that name their line.

use datafusion::arrow::array::{Array, StringArray};

use super::binary::BINARY_SIGNATURE;
use super::*;

fn columns(types: &[PgType]) -> Vec<(String, PgType)> {
    types
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("c{i}"), *t))
        .collect()
}

/// Feeds `input` in chunks of `size` bytes, as CopyData may split it anywhere.
fn decode_in_chunks(d: &mut Decoder, input: &[u8], size: usize) -> Decoded {
    for chunk in input.chunks(size) {
        d.feed(chunk).expect("feed");
    }
    d.finish().expect("finish");
    d.take()
}

fn strings(decoded: &Decoded, column: usize) -> Vec<Option<String>> {
    let array = decoded.columns[column]
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("strings");
    array.iter().map(|v| v.map(str::to_string)).collect()
}

#[test]
fn text_format_escapes_nulls_and_split_chunks() {
    let mut d = Decoder::new(
        Format::Text {
            delimiter: b'\t',
            null: b"\\N".to_vec(),
        },
        columns(&[PgType::Int4, PgType::Text]),
    );
    let input = b"1\ta\\tb\\\\c\n2\t\\N\n3\t\\101\\x41\n\\.\n";
    let decoded = decode_in_chunks(&mut d, &input[..], 3);
    assert_eq!(decoded.lines, vec![1, 2, 3]);
    assert_eq!(
        strings(&decoded, 1),
        vec![Some("a\tb\\c".into()), None, Some("AA".into())]
    );
}

#[test]
fn csv_quotes_newlines_header_and_empty_versus_null() {
    let mut d = Decoder::new(
        Format::Csv {
            delimiter: b',',
            quote: b'"',
            escape: b'"',
            null: Vec::new(),
            header: true,
        },
        columns(&[PgType::Int4, PgType::Text]),
    );
    let input = b"id,name\r\n1,\"a,\"\"b\"\"\nc\"\r\n2,\n3,\"\"\n4,x";
    let decoded = decode_in_chunks(&mut d, &input[..], 2);
    assert_eq!(decoded.lines, vec![2, 4, 5, 6]);
    assert_eq!(
        strings(&decoded, 1),
        vec![
            Some("a,\"b\"\nc".into()),
            None,
            Some(String::new()),
            Some("x".into())
        ]
    );
}

#[test]
fn field_count_errors_name_the_line() {
    let mut d = Decoder::new(
        Format::Csv {
            delimiter: b',',
            quote: b'"',
            escape: b'"',
            null: Vec::new(),
            header: false,
        },
        columns(&[PgType::Int4, PgType::Text]),
    );
    let error = d.feed(b"1,a\n2,b,c\n").expect_err("extra column");
    assert_eq!((error.code, error.line), (CopyFault::BadCopyFileFormat, 2));
    let mut d = Decoder::new(
        Format::Text {
            delimiter: b'\t',
            null: b"\\N".to_vec(),
        },
        columns(&[PgType::Int4, PgType::Text]),
    );
    let error = d.feed(b"1\ta\n2\n").expect_err("missing column");
    assert_eq!((error.code, error.line), (CopyFault::BadCopyFileFormat, 2));
}

#[test]
fn binary_tuples_become_text() {
    let mut input = BINARY_SIGNATURE.to_vec();
    input.extend_from_slice(&0i32.to_be_bytes());
    input.extend_from_slice(&0i32.to_be_bytes());
    input.extend_from_slice(&3i16.to_be_bytes());
    input.extend_from_slice(&4i32.to_be_bytes());
    input.extend_from_slice(&42i32.to_be_bytes());
    input.extend_from_slice(&(-1i32).to_be_bytes());
    // numeric -12.50: ndigits 2, weight 0, sign neg, dscale 2, digits [12, 5000]
    input.extend_from_slice(&12i32.to_be_bytes());
    for w in [2i16, 0, 0x4000, 2, 12, 5000] {
        input.extend_from_slice(&w.to_be_bytes());
    }
    input.extend_from_slice(&(-1i16).to_be_bytes());
    let mut d = Decoder::new(
        Format::Binary,
        columns(&[PgType::Int4, PgType::Text, PgType::Numeric(Some((10, 2)))]),
    );
    let decoded = decode_in_chunks(&mut d, &input[..], 5);
    assert_eq!(strings(&decoded, 0), vec![Some("42".into())]);
    assert_eq!(strings(&decoded, 1), vec![None]);
    assert_eq!(strings(&decoded, 2), vec![Some("-12.50".into())]);
}
