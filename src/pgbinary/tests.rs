//! Unit tests of the binary decoder: every column type well-formed and of the wrong length,
//! NULLs, numeric's edge cases (both of its paths agreeing), and builders giving the Arrow
//! type and values the text conversion gives.

use bytes::BytesMut;
use datafusion::arrow::array::{
    Array, AsArray, BinaryArray, BooleanArray, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
};
use postgres_types::ToSql;
use rust_decimal::Decimal;

use super::*;

fn fault<T: std::fmt::Debug>(result: Result<T, ValueError>) -> ValueFault {
    result.expect_err("refused").fault
}

fn assert_wrong_length<T: std::fmt::Debug>(result: Result<T, ValueError>) {
    let error = result.expect_err("wrong length");
    assert_eq!(error.fault, ValueFault::Format);
    assert!(
        error.message.starts_with("incorrect binary data format"),
        "{error:?}"
    );
}

#[test]
fn fixed_width_types_decode_and_check_their_length() {
    assert!(bool::from_binary(&[1]).unwrap());
    assert!(!bool::from_binary(&[0]).unwrap());
    assert_wrong_length(bool::from_binary(&[1, 0]));
    assert_eq!(i16::from_binary(&(-7i16).to_be_bytes()), Ok(-7));
    assert_wrong_length(i16::from_binary(&[0]));
    assert_eq!(i32::from_binary(&i32::MIN.to_be_bytes()), Ok(i32::MIN));
    assert_wrong_length(i32::from_binary(&[0; 8]));
    assert_eq!(i64::from_binary(&i64::MAX.to_be_bytes()), Ok(i64::MAX));
    assert_wrong_length(i64::from_binary(&[0; 4]));
    assert_eq!(f32::from_binary(&1.5f32.to_be_bytes()), Ok(1.5));
    assert_wrong_length(f32::from_binary(&[0; 8]));
    assert_eq!(f64::from_binary(&(-0.1f64).to_be_bytes()), Ok(-0.1));
    assert!(f64::from_binary(&f64::NAN.to_be_bytes()).unwrap().is_nan());
    assert_wrong_length(f64::from_binary(&[]));
}

#[test]
fn text_json_jsonb_bytea_and_uuid() {
    assert_eq!(<&str>::from_binary("héllo".as_bytes()), Ok("héllo"));
    assert_eq!(String::from_binary(b""), Ok(String::new()));
    assert_eq!(fault(<&str>::from_binary(b"a\xff")), ValueFault::Encoding);
    assert_eq!(jsonb(b"\x01{\"a\": 1}"), Ok("{\"a\": 1}"));
    assert_eq!(fault(jsonb(b"\x02{}")), ValueFault::Format);
    assert_eq!(fault(jsonb(b"")), ValueFault::Format);
    assert_eq!(fault(jsonb(b"\x01\xff")), ValueFault::Encoding);
    assert_eq!(bytea(b"\0\x01\xff"), Ok(&b"\0\x01\xff"[..]));
    let bytes: Vec<u8> = (0..16).map(|i| i * 17).collect();
    assert_eq!(
        uuid(&bytes).unwrap().to_string(),
        "00112233-4455-6677-8899-aabbccddeeff"
    );
    assert_wrong_length(uuid(&bytes[..15]));
}

#[test]
fn dates_and_timestamps_count_from_1970_in_utc() {
    // PostgreSQL counts from 2000-01-01: 10957 days, 946684800 seconds after 1970.
    assert_eq!(date(&0i32.to_be_bytes()), Ok(10_957));
    assert_eq!(date(&(-10_957i32).to_be_bytes()), Ok(0));
    assert_eq!(date(&(-10_958i32).to_be_bytes()), Ok(-1));
    assert_wrong_length(date(&[0; 8]));
    // `infinity` is beyond chrono's range: refused, as today.
    assert_eq!(fault(date(&i32::MAX.to_be_bytes())), ValueFault::Format);
    let micros = 946_684_800_000_000i64;
    assert_eq!(timestamp(&0i64.to_be_bytes()), Ok(micros));
    assert_eq!(timestamptz(&(-1i64).to_be_bytes()), Ok(micros - 1));
    assert_wrong_length(timestamp(&[0; 4]));
    assert_wrong_length(timestamptz(&[0; 9]));
    assert_eq!(
        fault(timestamp(&i64::MAX.to_be_bytes())),
        ValueFault::Format
    );
    assert_eq!(
        fault(timestamptz(&i64::MIN.to_be_bytes())),
        ValueFault::Format
    );
}

/// A binary numeric from its header and base-10000 digits.
fn numeric_bytes(sign: u16, weight: i16, dscale: u16, digits: &[u16]) -> Vec<u8> {
    let mut out = Vec::new();
    for word in [digits.len() as u16, weight as u16, sign, dscale]
        .into_iter()
        .chain(digits.iter().copied())
    {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out
}

fn decimal_bytes(text: &str) -> Vec<u8> {
    let mut out = BytesMut::new();
    let value: Decimal = text.parse().expect("decimal");
    value.to_sql(&Type::NUMERIC, &mut out).expect("to_sql");
    out.to_vec()
}

#[test]
fn numerics_take_the_column_scale() {
    // -12.50: two digits, weight 0, negative, dscale 2.
    let bytes = numeric_bytes(0x4000, 0, 2, &[12, 5000]);
    assert_eq!(numeric(&bytes, 10, 2), Ok(-1250));
    assert_eq!(numeric(&bytes, 10, 0), Ok(-13), "half away from zero");
    assert_eq!(numeric(&bytes, 10, 4), Ok(-125_000));
    assert_eq!(numeric(&numeric_bytes(0, 0, 0, &[]), 10, 2), Ok(0));
    assert_eq!(numeric(&numeric_bytes(0x4000, 0, 3, &[]), 5, 3), Ok(0));
    assert_eq!(numeric(&decimal_bytes("3.25"), 10, 2), Ok(325));
    for (text, scaled) in [
        ("1.005", 101),
        ("-1.005", -101),
        ("1.0049", 100),
        ("0.0001", 0),
        ("99.995", 10_000),
    ] {
        assert_eq!(numeric(&decimal_bytes(text), 10, 2), Ok(scaled), "{text}");
    }
    // Digits beyond the display scale are dropped, not rounded (numeric_recv's trunc_var).
    assert_eq!(numeric(&numeric_bytes(0, 0, 1, &[1, 2500]), 10, 2), Ok(120));
    assert_eq!(numeric(&numeric_bytes(0, 0, 1, &[1, 9999]), 10, 0), Ok(2));
    // Places after the last digit are zeros: 5 × 10000^2; 1 × 10000^-1.
    assert_eq!(
        numeric(&numeric_bytes(0, 2, 0, &[5]), 10, 0),
        Ok(500_000_000)
    );
    assert_eq!(numeric(&numeric_bytes(0, -1, 4, &[1]), 10, 4), Ok(1));
    // Unconstrained numeric is (38, 10).
    assert_eq!(
        numeric(&decimal_bytes("-0.12345678905"), 38, 10),
        Ok(-1_234_567_891)
    );
}

#[test]
fn numerics_beyond_rust_decimal_stay_exact() {
    // 38 digits, and 28 integer digits with 10 fraction digits: past rust_decimal's 28.
    let digits = [12, 5678, 9012, 3456, 7890, 1234, 5678, 9012, 3456, 78];
    let big = numeric_bytes(0, 9, 0, &digits);
    assert_eq!(
        numeric(&big, 38, 0),
        Ok(12_5678_9012_3456_7890_1234_5678_9012_3456_0078)
    );
    let fraction = numeric_bytes(
        0x4000,
        6,
        10,
        &[1234, 5678, 9012, 3456, 7890, 1234, 5678, 9012, 3456, 7800],
    );
    assert_eq!(
        numeric(&fraction, 38, 10),
        Ok(-12_3456_7890_1234_5678_9012_3456_7890_1234_5678)
    );
    // Many fraction digits, rounded at the column's scale.
    let long = numeric_bytes(
        0,
        -1,
        36,
        &[1234, 5678, 9012, 3456, 7890, 1234, 5678, 9012, 3456],
    );
    assert_eq!(numeric(&long, 38, 10), Ok(1_234_567_890));
    assert_eq!(numeric(&long, 38, 11), Ok(12_345_678_901));
    assert_eq!(
        numeric(&long, 38, 36),
        Ok(1234_5678_9012_3456_7890_1234_5678_9012_3456)
    );
    // rust_decimal panics on this one (a number beyond its 96 bits, in its "checked" path).
    let beyond = numeric_bytes(0, 9, 0, &[1]);
    assert_eq!(numeric(&beyond, 38, 0), Ok(10i128.pow(36)));
}

#[test]
fn numerics_a_column_cannot_hold_are_refused() {
    let error = numeric(&numeric_bytes(0xC000, 0, 0, &[]), 10, 2).expect_err("NaN");
    assert_eq!(error.fault, ValueFault::Format);
    assert_eq!(error.message, "NaN cannot be stored in numeric columns");
    for infinity in [0xD000, 0xF000] {
        let error = numeric(&numeric_bytes(infinity, 0, 0, &[]), 38, 10).expect_err("infinity");
        assert_eq!(error.fault, ValueFault::OutOfRange, "{error:?}");
    }
    // 123456789.00 does not fit numeric(10,2); 0.5 does not fit numeric(2,2) once rounded up.
    let error = numeric(&decimal_bytes("123456789.00"), 10, 2).expect_err("too big");
    assert_eq!(error.fault, ValueFault::OutOfRange);
    assert!(error.message.contains("less than 10^8"), "{error:?}");
    let error = numeric(&decimal_bytes("0.995"), 2, 2).expect_err("rounds up");
    assert!(error.message.contains("less than 1"), "{error:?}");
    assert_eq!(numeric(&decimal_bytes("0.994"), 2, 2), Ok(99));
    assert_eq!(
        fault(numeric(&numeric_bytes(0, i16::MAX, 0, &[1]), 38, 0)),
        ValueFault::OutOfRange
    );
    // A zero keeps no digits however large its weight.
    assert_eq!(
        numeric(&numeric_bytes(0, i16::MAX, 0, &[0, 0]), 38, 0),
        Ok(0)
    );
    // Malformed: short, a count the bytes disagree with, a bad sign, scale or digit.
    assert_wrong_length(numeric(&[0; 6], 10, 2));
    let mut short = numeric_bytes(0, 0, 0, &[1, 2]);
    short.truncate(10);
    assert_wrong_length(numeric(&short, 10, 2));
    for (bytes, message) in [
        (numeric_bytes(0x1234, 0, 0, &[1]), "invalid sign"),
        (numeric_bytes(0, 0, 0x4000, &[1]), "invalid scale"),
        (numeric_bytes(0, 0, 0, &[10_000]), "invalid digit"),
    ] {
        let error = numeric(&bytes, 10, 2).expect_err(message);
        assert_eq!(error.fault, ValueFault::Format);
        assert!(error.message.starts_with(message), "{error:?}");
    }
}

#[test]
fn both_numeric_paths_agree_where_rust_decimal_is_exact() {
    // A fixed pseudo-random walk over mantissas, scales and column scales.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut checked = 0;
    for _ in 0..5000 {
        let digits = (next() % 28 + 1) as u32;
        let sign = if next() % 2 == 0 { 1 } else { -1 };
        let mantissa =
            sign * i128::from(next() >> 1) * i128::from(next() >> 1) % 10i128.pow(digits);
        let decimal = Decimal::from_i128_with_scale(mantissa, (next() % 29) as u32);
        let mut bytes = BytesMut::new();
        decimal.to_sql(&Type::NUMERIC, &mut bytes).expect("to_sql");
        let parsed = numeric::parse(&bytes).expect("parse").expect("finite");
        let scale = (next() % 39) as i8;
        if parsed.fits_decimal() {
            checked += 1;
            let by_decimal = numeric(&bytes, 38, scale);
            let by_digits = numeric::exact(&parsed, i32::from(scale));
            match by_decimal {
                Ok(v) => assert_eq!(Some(v), by_digits, "{decimal} at scale {scale}"),
                Err(_) => assert!(
                    by_digits.is_none_or(|v| v.abs() >= 10i128.pow(38)),
                    "{decimal} at scale {scale}"
                ),
            }
        }
    }
    assert!(checked > 4000, "{checked}");
}

#[test]
fn builders_give_the_arrow_type_and_the_text_conversions_values() {
    let build = |pg_type: PgType, values: &[Option<Vec<u8>>]| {
        let mut builder = ColumnBuilder::new(pg_type);
        for value in values {
            match value {
                Some(bytes) => builder.append(bytes).expect("append"),
                None => builder.append_null(),
            }
        }
        let array = builder.finish();
        assert_eq!(array.data_type(), &pg_type.arrow_type(), "{pg_type}");
        array
    };
    // What text COPY gives: the text cast to the column's Arrow type.
    let from_text = |pg_type: PgType, text: &[Option<&str>]| {
        cast(&StringArray::from(text.to_vec()), &pg_type.arrow_type()).expect("cast")
    };
    let one = |v: &[u8]| vec![Some(v.to_vec()), None];

    let array = build(PgType::Bool, &one(&[1]));
    assert_eq!(
        array.as_boolean(),
        &BooleanArray::from(vec![Some(true), None])
    );
    let array = build(PgType::Int2, &one(&7i16.to_be_bytes()));
    assert_eq!(array.as_primitive::<Int16Type>().value(0), 7);
    let array = build(PgType::Int4, &one(&(-7i32).to_be_bytes()));
    assert_eq!(array.as_primitive::<Int32Type>().value(0), -7);
    let array = build(PgType::Int8, &one(&7i64.to_be_bytes()));
    assert_eq!(array.as_primitive::<Int64Type>().value(0), 7);
    let array = build(PgType::Float4, &one(&0.1f32.to_be_bytes()));
    assert_eq!(array.as_primitive::<Float32Type>().value(0), 0.1);
    let array = build(PgType::Float8, &one(&0.1f64.to_be_bytes()));
    assert_eq!(&array, &from_text(PgType::Float8, &[Some("0.1"), None]));
    assert_eq!(array.as_primitive::<Float64Type>().null_count(), 1);
    for pg_type in [
        PgType::Text,
        PgType::Varchar(Some(3)),
        PgType::Bpchar(4),
        PgType::Json,
    ] {
        let array = build(pg_type, &one(b"{ }"));
        assert_eq!(
            array.as_string::<i32>(),
            &StringArray::from(vec![Some("{ }"), None])
        );
    }
    let array = build(PgType::Jsonb, &one(b"\x01[1,  2]"));
    assert_eq!(array.as_string::<i32>().value(0), "[1,  2]");
    let bytes: Vec<u8> = (0..16).collect();
    let array = build(PgType::Uuid, &one(&bytes));
    assert_eq!(
        array.as_string::<i32>().value(0),
        "00010203-0405-0607-0809-0a0b0c0d0e0f"
    );
    let array = build(PgType::Bytea, &one(b"\0\xff"));
    assert_eq!(
        array.as_binary::<i32>(),
        &BinaryArray::from(vec![Some(&b"\0\xff"[..]), None])
    );
    // 2026-11-02 is 9802 days after 2000-01-01.
    let array = build(PgType::Date, &one(&9802i32.to_be_bytes()));
    assert_eq!(
        &array,
        &from_text(PgType::Date, &[Some("2026-11-02"), None])
    );
    assert_eq!(array.as_primitive::<Date32Type>().value(0), 20_759);
    // 2026-11-02 03:04:05.000600 as PostgreSQL counts it.
    let micros = 9802 * 86_400_000_000 + 11_045_000_600i64;
    for pg_type in [PgType::Timestamp, PgType::Timestamptz] {
        let array = build(pg_type, &one(&micros.to_be_bytes()));
        let text = from_text(pg_type, &[Some("2026-11-02 03:04:05.000600"), None]);
        assert_eq!(&array, &text, "{pg_type}");
        let stored = array.as_any().downcast_ref::<TimestampMicrosecondArray>();
        assert_eq!(stored.map(|a| a.value(0)), Some(1_793_588_645_000_600));
    }
    for pg_type in [PgType::Numeric(Some((10, 2))), PgType::Numeric(None)] {
        let array = build(pg_type, &one(&decimal_bytes("-12.345")));
        let text = from_text(pg_type, &[Some("-12.345"), None]);
        assert_eq!(&array, &text, "{pg_type}");
    }
    let array = build(PgType::Numeric(Some((5, 1))), &one(&decimal_bytes("2.25")));
    assert_eq!(array.as_primitive::<Decimal128Type>().value(0), 23);
}

#[test]
fn a_refused_value_appends_nothing() {
    let mut builder = ColumnBuilder::new(PgType::Int4);
    builder.append(&1i32.to_be_bytes()).expect("append");
    assert_wrong_length(builder.append(&[0; 3]));
    assert_eq!(
        fault(builder.append(b"")),
        ValueFault::Format,
        "an empty value is not NULL"
    );
    builder.append_null();
    let array = builder.finish();
    assert_eq!(array.len(), 2);
    assert_eq!(builder.finish().len(), 0, "finish starts a new array");
    let mut builder = ColumnBuilder::new(PgType::Numeric(Some((3, 0))));
    assert_eq!(
        fault(builder.append(&decimal_bytes("1000"))),
        ValueFault::OutOfRange
    );
    assert_eq!(builder.finish().len(), 0);
}

/// A numeric's text as binary COPY rendered it before this module: the reference the text
/// conversion parses.
fn numeric_text(negative: bool, weight: i16, dscale: usize, digits: &[u16]) -> String {
    let mut out = String::from(if negative { "-" } else { "" });
    if weight < 0 {
        out.push('0');
    } else {
        for w in 0..=weight as usize {
            let d = digits.get(w).copied().unwrap_or(0);
            out.push_str(&if w == 0 {
                d.to_string()
            } else {
                format!("{d:04}")
            });
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut group = i32::from(weight) + 1;
        while fraction.len() < dscale {
            let d = usize::try_from(group)
                .ok()
                .and_then(|g| digits.get(g))
                .copied();
            fraction.push_str(&format!("{:04}", d.unwrap_or(0)));
            group += 1;
        }
        fraction.truncate(dscale);
        out.push('.');
        out.push_str(&fraction);
    }
    out
}

#[test]
fn numerics_convert_as_their_text_does() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..5000 {
        let count = (next() % 11) as usize;
        let digits: Vec<u16> = (0..count).map(|_| (next() % 10_000) as u16).collect();
        let weight = (next() % 21) as i16 - 10;
        let dscale = (next() % 41) as u16;
        let negative = next() % 2 == 0;
        let sign = if negative { 0x4000 } else { 0 };
        let bytes = numeric_bytes(sign, weight, dscale, &digits);
        let text = numeric_text(negative, weight, usize::from(dscale), &digits);
        let (precision, scale) = (38, (next() % 39) as i8);
        let target = DataType::Decimal128(precision, scale);
        let by_text = cast(&StringArray::from(vec![text.clone()]), &target).expect("cast");
        let by_text = by_text.as_primitive::<Decimal128Type>();
        let decoded = numeric(&bytes, precision, scale);
        if by_text.is_null(0) {
            assert_eq!(fault(decoded), ValueFault::OutOfRange, "{text} at {scale}");
        } else {
            assert_eq!(decoded, Ok(by_text.value(0)), "{text} at {scale}");
        }
    }
}
