//! Numbers stored into `numeric(p, s)` as PostgreSQL stores them: a float is first written
//! with its type's significant digits (15 for `double precision`, 6 for `real`, as
//! `float8_numeric` does), then rounded to the scale half away from zero; a value with more
//! digits than the precision allows is an overflow (22003), never a silent change. Callers:
//! `server::params` (float and integer parameters bound to numeric columns).

use super::TypeError;

fn overflow() -> TypeError {
    TypeError::NumericOverflow
}

/// The unscaled Decimal128 value of `value` in `numeric(precision, scale)`; `digits` is the
/// float type's significant digits (15 or 6).
///
/// # Errors
/// NaN, infinities, and values beyond the precision.
pub fn float_to_decimal(
    value: f64,
    digits: usize,
    precision: u8,
    scale: i8,
) -> Result<i128, TypeError> {
    if !value.is_finite() {
        return Err(overflow());
    }
    if value == 0.0 {
        return Ok(0);
    }
    // `d.ddddde±x`: the float's decimal digits as PostgreSQL writes them.
    let text = format!("{:.*e}", digits.saturating_sub(1), value);
    let (mantissa, exponent) = text.split_once('e').ok_or_else(overflow)?;
    let exponent: i32 = exponent.parse().map_err(|_| overflow())?;
    let negative = mantissa.starts_with('-');
    let digits_text: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let unscaled: i128 = digits_text.parse().map_err(|_| overflow())?;
    let shift = exponent - (digits_text.len() as i32 - 1) + i32::from(scale);
    let magnitude = scale_by(unscaled, shift)?;
    within(if negative { -magnitude } else { magnitude }, precision)
}

/// The unscaled Decimal128 value of an integer in `numeric(precision, scale)`.
///
/// # Errors
/// Values beyond the precision.
pub fn int_to_decimal(value: i64, precision: u8, scale: i8) -> Result<i128, TypeError> {
    let negative = value < 0;
    let magnitude = scale_by(i128::from(value).abs(), i32::from(scale))?;
    within(if negative { -magnitude } else { magnitude }, precision)
}

/// `value × 10^shift`, rounding half away from zero when `shift` is negative.
fn scale_by(value: i128, shift: i32) -> Result<i128, TypeError> {
    if shift >= 0 {
        let factor = 10i128.checked_pow(shift as u32).ok_or_else(overflow)?;
        value.checked_mul(factor).ok_or_else(overflow)
    } else if -shift > 38 {
        Ok(0)
    } else {
        let factor = 10i128.pow((-shift) as u32);
        Ok((value + factor / 2) / factor)
    }
}

fn within(value: i128, precision: u8) -> Result<i128, TypeError> {
    let limit = 10i128
        .checked_pow(u32::from(precision))
        .unwrap_or(i128::MAX);
    if value.abs() < limit {
        Ok(value)
    } else {
        Err(overflow())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_as_postgres_rounds_them() {
        assert_eq!(float_to_decimal(1.2345, 15, 10, 2).unwrap(), 123);
        // 2.675 is 2.67499999... in binary; PostgreSQL reads its 15 digits, "2.675".
        assert_eq!(float_to_decimal(2.675, 15, 10, 2).unwrap(), 268);
        assert_eq!(float_to_decimal(-2.675, 15, 10, 2).unwrap(), -268);
        assert_eq!(float_to_decimal(0.005, 15, 10, 2).unwrap(), 1);
        assert_eq!(float_to_decimal(1e-30, 15, 10, 2).unwrap(), 0);
        assert!(float_to_decimal(123_456_789.0, 15, 10, 2).is_err());
        assert!(float_to_decimal(99_999_999.995, 15, 10, 2).is_err());
        assert!(float_to_decimal(f64::NAN, 15, 10, 2).is_err());
        assert_eq!(int_to_decimal(-42, 10, 2).unwrap(), -4200);
        assert!(int_to_decimal(100_000_000, 10, 2).is_err());
    }
}
