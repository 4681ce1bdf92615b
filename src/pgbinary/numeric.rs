//! `numeric`'s binary form as an Arrow `Decimal128` of a column's precision and scale.
//!
//! PostgreSQL sends a numeric as a header (number of base-10000 digits, the weight of the
//! first, the sign, the display scale) and its digits. The header is checked here as
//! PostgreSQL's `numeric_recv` checks it; a value that rust_decimal holds exactly (at most
//! seven digits, between 10^28 and 10^-28: every numeric a `numeric(p, s)` column of up to 28
//! digits holds) is then decoded with its `FromSql`, and any other (up to 38 digits, or more
//! fraction digits than the column keeps) with [`exact`], which reads the digits itself:
//! rust_decimal rounds or refuses beyond 28 digits, and panics on some values past its 96 bits.
//! Both round half away from zero to the column's scale, as PostgreSQL and the text
//! conversion do, after dropping digits the display scale hides, as `numeric_recv` does.

use postgres_types::{FromSql, Type};
use rust_decimal::Decimal;

use super::{ValueError, ValueFault, incorrect};

const POSITIVE: u16 = 0x0000;
const NEGATIVE: u16 = 0x4000;
const NAN: u16 = 0xC000;
const INFINITY: u16 = 0xD000;
const NEGATIVE_INFINITY: u16 = 0xF000;
/// Digits rust_decimal holds exactly, and the largest scale it has.
const DECIMAL_DIGITS: i32 = 28;

/// A checked numeric header, and its digits.
pub(super) struct Numeric<'a> {
    negative: bool,
    /// The power of 10000 of the first digit.
    weight: i32,
    /// Fraction digits shown; digits below it are dropped.
    dscale: i32,
    /// Base-10000 digits as sent, two bytes each, each checked to be below 10000.
    digits: &'a [u8],
}

impl Numeric<'_> {
    fn digit(&self, i: usize) -> i32 {
        i32::from(u16::from_be_bytes([
            self.digits[2 * i],
            self.digits[2 * i + 1],
        ]))
    }

    fn count(&self) -> usize {
        self.digits.len() / 2
    }

    /// The power of ten of the lowest nonzero decimal digit, `None` for zero.
    fn lowest(&self) -> Option<i32> {
        let i = (0..self.count()).rev().find(|i| self.digit(*i) != 0)?;
        let mut digit = self.digit(i);
        let mut zeros = 0;
        while digit % 10 == 0 {
            digit /= 10;
            zeros += 1;
        }
        Some(4 * (self.weight - i as i32) + zeros)
    }

    /// Whether rust_decimal's `FromSql` gives exactly this value: its digits span at most 28
    /// decimal places between 10^28 and 10^-28 (so no sum on its way overflows 96 bits), and
    /// the display scale hides none of them (rust_decimal would round them, PostgreSQL drops
    /// them).
    pub(super) fn fits_decimal(&self) -> bool {
        let groups = DECIMAL_DIGITS / 4;
        self.count() as i32 <= groups
            && self.weight < groups
            && self.weight - self.count() as i32 + 1 >= -groups
            && self.lowest().is_none_or(|lowest| lowest >= -self.dscale)
    }
}

/// A binary `numeric` as the `Decimal128` value of a column of `precision` and `scale`.
///
/// # Errors
/// A malformed header or digit, NaN, an infinity, a value beyond the column's precision.
pub fn numeric(bytes: &[u8], precision: u8, scale: i8) -> Result<i128, ValueError> {
    let value = parse(bytes)?;
    let scale = i32::from(scale);
    let overflow = |detail: String| ValueError {
        fault: ValueFault::OutOfRange,
        message: format!(
            "numeric field overflow: a field with precision {precision}, scale {scale} {detail}"
        ),
    };
    let Some(value) = value else {
        return Err(overflow("cannot hold an infinite value".into()));
    };
    let scaled = if value.fits_decimal() {
        let decimal =
            Decimal::from_sql(&Type::NUMERIC, bytes).map_err(|_| incorrect(bytes, "numeric"))?;
        rescale(decimal.mantissa(), decimal.scale() as i32, scale)
    } else {
        exact(&value, scale)
    };
    let limit = 10i128.checked_pow(u32::from(precision));
    match (scaled, limit) {
        (Some(v), Some(limit)) if v.abs() < limit => Ok(v),
        (Some(v), None) => Ok(v),
        _ => {
            let digits = i32::from(precision) - scale;
            Err(overflow(if digits > 0 {
                format!("must round to an absolute value less than 10^{digits}")
            } else {
                "must round to an absolute value less than 1".into()
            }))
        }
    }
}

/// The checked header and digits; `None` for an infinity.
pub(super) fn parse(bytes: &[u8]) -> Result<Option<Numeric<'_>>, ValueError> {
    let word = |i: usize| u16::from_be_bytes([bytes[2 * i], bytes[2 * i + 1]]);
    if bytes.len() < 8 {
        return Err(incorrect(bytes, "numeric"));
    }
    let count = word(0) as i16;
    if count < 0 || bytes.len() != 8 + 2 * count as usize {
        return Err(incorrect(bytes, "numeric"));
    }
    let negative = match word(2) {
        POSITIVE => false,
        NEGATIVE => true,
        NAN => {
            return Err(ValueError::format(
                "NaN cannot be stored in numeric columns",
            ));
        }
        INFINITY | NEGATIVE_INFINITY => return Ok(None),
        _ => {
            return Err(ValueError::format(
                "invalid sign in external \"numeric\" value",
            ));
        }
    };
    let dscale = word(3);
    if dscale & 0x3FFF != dscale {
        return Err(ValueError::format(
            "invalid scale in external \"numeric\" value",
        ));
    }
    let digits = &bytes[8..];
    if (0..count as usize).any(|i| word(4 + i) >= 10_000) {
        return Err(ValueError::format(
            "invalid digit in external \"numeric\" value",
        ));
    }
    Ok(Some(Numeric {
        negative,
        weight: i32::from(word(1) as i16),
        dscale: i32::from(dscale),
        digits,
    }))
}

/// `mantissa` × 10^-`from` as a multiple of 10^-`to`, rounded half away from zero; `None`
/// when it overflows.
fn rescale(mantissa: i128, from: i32, to: i32) -> Option<i128> {
    if from <= to {
        return mantissa.checked_mul(10i128.checked_pow((to - from) as u32)?);
    }
    let Some(divisor) = 10i128.checked_pow((from - to) as u32) else {
        // More than 38 digits dropped: less than half a unit is left of any i128.
        return Some(0);
    };
    let (quotient, remainder) = (mantissa / divisor, mantissa % divisor);
    Some(
        if remainder.unsigned_abs() >= divisor.unsigned_abs().div_ceil(2) {
            quotient + mantissa.signum()
        } else {
            quotient
        },
    )
}

/// The value as a multiple of 10^-`scale`, from its digits: the decimal digits down to the
/// scale's, then the next one rounds, and digits the display scale hides count as zero;
/// `None` when it overflows.
pub(super) fn exact(value: &Numeric<'_>, scale: i32) -> Option<i128> {
    let mut scaled: i128 = 0;
    // The power of ten of the next decimal digit.
    let mut next = 4 * value.weight + 3;
    let mut round_up = false;
    'digits: for i in 0..value.count() {
        let group = value.digit(i);
        for power in [1000, 100, 10, 1] {
            if next < -value.dscale || next < -scale - 1 {
                break 'digits;
            }
            let digit = group / power % 10;
            if next == -scale - 1 {
                round_up = digit >= 5;
                break 'digits;
            }
            scaled = scaled.checked_mul(10)?.checked_add(i128::from(digit))?;
            next -= 1;
        }
    }
    // Places below the digits sent, down to the scale's, are zeros.
    let zeros = next + scale + 1;
    if zeros > 0 && scaled != 0 {
        scaled = scaled.checked_mul(10i128.checked_pow(zeros as u32)?)?;
    }
    if round_up {
        scaled = scaled.checked_add(1)?;
    }
    Some(if value.negative { -scaled } else { scaled })
}
