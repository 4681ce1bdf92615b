//! Unit tests of the COPY decoder: each format, records split across payloads, binary fields
//! decoded into typed columns, and errors that name their line.

use datafusion::arrow::array::{Array, AsArray, StringArray};
use datafusion::arrow::datatypes::{Decimal128Type, Int32Type};

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
    let Column::Text(array) = &decoded.columns[column] else {
        panic!("text input gives string columns");
    };
    array.iter().map(|v| v.map(str::to_string)).collect()
}

fn typed(decoded: &Decoded, column: usize) -> &ArrayRef {
    match &decoded.columns[column] {
        Column::Typed(array) => array,
        Column::Text(_) => panic!("binary input gives typed columns"),
    }
}

/// A binary COPY input: the header, then tuples of fields (`None` for NULL), then the trailer.
fn binary_input(tuples: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
    let mut input = BINARY_SIGNATURE.to_vec();
    input.extend_from_slice(&0i32.to_be_bytes());
    input.extend_from_slice(&0i32.to_be_bytes());
    for fields in tuples {
        input.extend_from_slice(&(fields.len() as i16).to_be_bytes());
        for field in fields {
            match field {
                Some(bytes) => {
                    input.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                    input.extend_from_slice(bytes);
                }
                None => input.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
    }
    input.extend_from_slice(&(-1i16).to_be_bytes());
    input
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
fn binary_tuples_become_typed_columns() {
    // numeric -12.50: ndigits 2, weight 0, sign neg, dscale 2, digits [12, 5000]
    let numeric: Vec<u8> = [2i16, 0, 0x4000, 2, 12, 5000]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect();
    let input = binary_input(&[
        vec![Some(42i32.to_be_bytes().to_vec()), None, Some(numeric)],
        vec![None, Some(b"x".to_vec()), None],
    ]);
    let mut d = Decoder::new(
        Format::Binary,
        columns(&[PgType::Int4, PgType::Text, PgType::Numeric(Some((10, 2)))]),
    );
    let decoded = decode_in_chunks(&mut d, &input[..], 5);
    assert_eq!(decoded.lines, vec![1, 2]);
    let ints = typed(&decoded, 0).as_primitive::<Int32Type>();
    assert_eq!(ints.iter().collect::<Vec<_>>(), vec![Some(42), None]);
    let text = typed(&decoded, 1).as_string::<i32>();
    assert_eq!(text, &StringArray::from(vec![None, Some("x")]));
    let numeric = typed(&decoded, 2).as_primitive::<Decimal128Type>();
    assert_eq!(numeric.iter().collect::<Vec<_>>(), vec![Some(-1250), None]);
    assert_eq!(
        numeric.data_type(),
        &PgType::Numeric(Some((10, 2))).arrow_type()
    );
}

#[test]
fn binary_field_errors_name_the_tuple_and_column() {
    let decode = |types: &[PgType], tuples: &[Vec<Option<Vec<u8>>>]| {
        let mut d = Decoder::new(Format::Binary, columns(types));
        d.feed(&binary_input(tuples)).and_then(|()| d.finish())
    };
    let good = Some(1i32.to_be_bytes().to_vec());
    let error = decode(
        &[PgType::Int4],
        &[vec![good.clone()], vec![Some(vec![0; 3])]],
    )
    .expect_err("wrong length");
    assert_eq!(
        (error.code, error.line, error.column.map(|c| c.0)),
        (CopyFault::InvalidBinaryRepresentation, 2, Some(0))
    );
    assert!(error.message.starts_with("incorrect binary data format"));
    let error = decode(
        &[PgType::Int4, PgType::Text],
        &[vec![good.clone(), Some(b"\xff".to_vec())]],
    )
    .expect_err("not UTF-8");
    assert_eq!(
        (error.code, error.column.map(|c| c.0)),
        (CopyFault::UntranslatableCharacter, Some(1))
    );
    let big: Vec<u8> = [1i16, 2, 0, 0, 1]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect();
    let error =
        decode(&[PgType::Numeric(Some((4, 2)))], &[vec![Some(big)]]).expect_err("beyond precision");
    assert_eq!(error.code, CopyFault::NumericValueOutOfRange);
    let error = decode(&[PgType::Int4], &[vec![good.clone(), good]]).expect_err("two fields");
    assert_eq!((error.code, error.line), (CopyFault::BadCopyFileFormat, 1));
    let mut d = Decoder::new(Format::Binary, columns(&[PgType::Int4]));
    let mut input = binary_input(&[]);
    input.truncate(input.len() - 2);
    d.feed(&input).expect("header");
    let error = d.finish().expect_err("no trailer");
    assert_eq!(error.code, CopyFault::BadCopyFileFormat);
}
