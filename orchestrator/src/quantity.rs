//! Kubernetes resource quantities: `"500m"` or `"0.5"` CPUs, `"256Mi"` or `"1G"` of memory.
//!
//! Only the forms people write in manifests are accepted; exponents (`"1e3"`) are not. Values
//! that would need rounding (a ten-thousandth of a core, a fraction of a byte) are refused rather
//! than silently rounded, so what the scheduler reserves is exactly what the file says.

use thiserror::Error;

const CPU_EXPECTED: &str =
    "expected cores such as \"0.5\" or \"2\", or millicores such as \"500m\"";
const MEMORY_EXPECTED: &str = "expected bytes such as \"1048576\", or a number with a unit: \
     Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024) or k, M, G, T, P, E (powers of 1000), e.g. \"256Mi\"";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum QuantityError {
    #[error("invalid CPU quantity {0:?}; {CPU_EXPECTED}")]
    Cpu(String),
    #[error("CPU quantity {0:?} is finer than a millicore; the smallest unit is \"1m\"")]
    CpuTooPrecise(String),
    #[error("invalid memory quantity {0:?}; {MEMORY_EXPECTED}")]
    Memory(String),
    #[error("memory quantity {0:?} is not a whole number of bytes")]
    FractionalBytes(String),
    #[error(
        "memory quantity {0:?} uses \"m\", which means thousandths; did you mean \"M\" \
         (megabytes) or \"Mi\" (mebibytes)?"
    )]
    Millibytes(String),
    #[error("quantity {0:?} is negative; expected a positive quantity")]
    Negative(String),
    #[error("quantity {0:?} is too large")]
    TooLarge(String),
}

/// Parses a CPU quantity into millicores: `"0.5"`, `"500m"` and `0.5` are all 500.
pub(crate) fn parse_cpu(text: &str) -> Result<u64, QuantityError> {
    let (number, per_unit) = match text.strip_suffix('m') {
        Some(number) => (number, 1),
        None => (text, 1000),
    };
    let decimal = parse_decimal(number).map_err(|problem| match problem {
        DecimalProblem::Negative => QuantityError::Negative(text.to_owned()),
        DecimalProblem::Malformed => QuantityError::Cpu(text.to_owned()),
        DecimalProblem::TooLarge => QuantityError::TooLarge(text.to_owned()),
    })?;
    match decimal.times(per_unit) {
        Scaled::Exact(millis) => Ok(millis),
        Scaled::Fractional => Err(QuantityError::CpuTooPrecise(text.to_owned())),
        Scaled::TooLarge => Err(QuantityError::TooLarge(text.to_owned())),
    }
}

/// Parses a memory quantity into bytes: `"256Mi"`, `"1G"`, `"1024"`, `"1.5Gi"`.
pub(crate) fn parse_memory(text: &str) -> Result<u64, QuantityError> {
    const UNITS: [(&str, u128); 12] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("Ei", 1 << 60),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("E", 1_000_000_000_000_000_000),
    ];
    if text.ends_with('m') && parse_decimal(&text[..text.len() - 1]).is_ok() {
        return Err(QuantityError::Millibytes(text.to_owned()));
    }
    let (number, per_unit) = UNITS
        .iter()
        .find_map(|&(suffix, bytes)| text.strip_suffix(suffix).map(|number| (number, bytes)))
        .unwrap_or((text, 1));
    let decimal = parse_decimal(number).map_err(|problem| match problem {
        DecimalProblem::Negative => QuantityError::Negative(text.to_owned()),
        DecimalProblem::Malformed => QuantityError::Memory(text.to_owned()),
        DecimalProblem::TooLarge => QuantityError::TooLarge(text.to_owned()),
    })?;
    match decimal.times(per_unit) {
        Scaled::Exact(bytes) => Ok(bytes),
        Scaled::Fractional => Err(QuantityError::FractionalBytes(text.to_owned())),
        Scaled::TooLarge => Err(QuantityError::TooLarge(text.to_owned())),
    }
}

/// The shortest exact spelling of `millis`: `"2"` for whole cores, `"250m"` otherwise.
pub(crate) fn format_cpu(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// `bytes` to one decimal in the largest binary unit it reaches, for messages: `"23.4Gi"`.
pub(crate) fn approximate_memory(bytes: u64) -> String {
    let mut value = bytes as f64;
    let mut unit = "";
    for next in ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    if unit.is_empty() {
        bytes.to_string()
    } else {
        format!("{value:.1}{unit}")
    }
}

/// The largest binary unit that expresses `bytes` exactly: `"256Mi"`, or plain bytes.
pub(crate) fn format_memory(bytes: u64) -> String {
    const UNITS: [(&str, u32); 6] = [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ];
    if bytes == 0 {
        return "0".to_owned();
    }
    UNITS
        .iter()
        .find(|&&(_, shift)| bytes.trailing_zeros() >= shift)
        .map_or_else(
            || bytes.to_string(),
            |&(unit, shift)| format!("{}{unit}", bytes >> shift),
        )
}

/// A non-negative decimal number: `digits / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    digits: u128,
    scale: u32,
}

enum DecimalProblem {
    Malformed,
    Negative,
    TooLarge,
}

enum Scaled {
    Exact(u64),
    Fractional,
    TooLarge,
}

/// Parses `[+]digits[.digits]`, with at least one digit on either side of the point.
fn parse_decimal(text: &str) -> Result<Decimal, DecimalProblem> {
    if text.starts_with('-') {
        return Err(DecimalProblem::Negative);
    }
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(DecimalProblem::Malformed);
    }
    // Trailing zeros after the point change nothing and would only risk overflow.
    let fraction = fraction.trim_end_matches('0');
    let mut digits: u128 = 0;
    for byte in whole.bytes().chain(fraction.bytes()) {
        digits = digits
            .checked_mul(10)
            .and_then(|digits| digits.checked_add(u128::from(byte - b'0')))
            .ok_or(DecimalProblem::TooLarge)?;
    }
    let scale = u32::try_from(fraction.len()).map_err(|_| DecimalProblem::TooLarge)?;
    Ok(Decimal { digits, scale })
}

impl Decimal {
    /// `self * per_unit`, if that is a whole number that fits a `u64`.
    fn times(self, per_unit: u128) -> Scaled {
        let Some(numerator) = self.digits.checked_mul(per_unit) else {
            return Scaled::TooLarge;
        };
        // More decimal places than a u128 can hold cannot come out whole for any unit here.
        let Some(denominator) = 10u128.checked_pow(self.scale) else {
            return Scaled::Fractional;
        };
        if numerator % denominator != 0 {
            return Scaled::Fractional;
        }
        u64::try_from(numerator / denominator).map_or(Scaled::TooLarge, Scaled::Exact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_in_cores_and_millicores() {
        assert_eq!(parse_cpu("0.5"), Ok(500));
        assert_eq!(parse_cpu("500m"), Ok(500));
        assert_eq!(parse_cpu("2"), Ok(2000));
        assert_eq!(parse_cpu("1.25"), Ok(1250));
        assert_eq!(parse_cpu(".5"), Ok(500));
        assert_eq!(
            parse_cpu("1.500000000000000000000000000000000000000000"),
            Ok(1500)
        );
        assert_eq!(parse_cpu("+1"), Ok(1000));
        assert_eq!(parse_cpu("0"), Ok(0));
        assert_eq!(parse_cpu("1m"), Ok(1));
    }

    #[test]
    fn cpu_errors_say_what_was_expected() {
        for bad in [
            "", "m", "abc", "1.2.3", "1 m", "1k", "1Gi", "NaN", "1e3", ".",
        ] {
            let error = parse_cpu(bad).expect_err(bad).to_string();
            assert!(error.contains("expected cores"), "{bad:?}: {error}");
        }
        assert_eq!(parse_cpu("-1"), Err(QuantityError::Negative("-1".into())));
        assert_eq!(
            parse_cpu("0.0005"),
            Err(QuantityError::CpuTooPrecise("0.0005".into()))
        );
        assert_eq!(
            parse_cpu("0.5m"),
            Err(QuantityError::CpuTooPrecise("0.5m".into()))
        );
        let huge = "9".repeat(40);
        assert_eq!(parse_cpu(&huge), Err(QuantityError::TooLarge(huge.clone())));
    }

    #[test]
    fn memory_with_binary_and_decimal_units() {
        assert_eq!(parse_memory("256Mi"), Ok(256 << 20));
        assert_eq!(parse_memory("1Gi"), Ok(1 << 30));
        assert_eq!(parse_memory("512M"), Ok(512_000_000));
        assert_eq!(parse_memory("1G"), Ok(1_000_000_000));
        assert_eq!(parse_memory("1024"), Ok(1024));
        assert_eq!(parse_memory("1k"), Ok(1000));
        assert_eq!(parse_memory("1Ki"), Ok(1024));
        assert_eq!(parse_memory("1.5Gi"), Ok(3 << 29));
        assert_eq!(parse_memory("15Ei"), Ok(15 << 60));
    }

    #[test]
    fn memory_errors_say_what_was_expected() {
        for bad in ["", "Mi", "1MB", "1 Mi", "1K", "1mi", "x1Gi", "1e6"] {
            let error = parse_memory(bad).expect_err(bad).to_string();
            assert!(error.contains("Ki, Mi, Gi"), "{bad:?}: {error}");
        }
        assert_eq!(
            parse_memory("128m"),
            Err(QuantityError::Millibytes("128m".into()))
        );
        assert_eq!(
            parse_memory("0.5"),
            Err(QuantityError::FractionalBytes("0.5".into()))
        );
        assert_eq!(
            parse_memory("-1Gi"),
            Err(QuantityError::Negative("-1Gi".into()))
        );
        assert_eq!(
            parse_memory("16Ei"),
            Err(QuantityError::TooLarge("16Ei".into()))
        );
    }

    #[test]
    fn approximate_memory_for_messages() {
        assert_eq!(approximate_memory(512), "512");
        assert_eq!(approximate_memory(1536), "1.5Ki");
        assert_eq!(approximate_memory(25_123_456_789), "23.4Gi");
    }

    #[test]
    fn formatting_round_trips() {
        for millis in [0, 1, 250, 999, 1000, 1500, 64_000, u64::MAX] {
            assert_eq!(parse_cpu(&format_cpu(millis)), Ok(millis));
        }
        for bytes in [
            0,
            1,
            1000,
            1024,
            256 << 20,
            (1 << 30) + 1,
            15 << 60,
            u64::MAX,
        ] {
            assert_eq!(parse_memory(&format_memory(bytes)), Ok(bytes));
        }
        assert_eq!(format_cpu(500), "500m");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_memory(256 << 20), "256Mi");
        assert_eq!(format_memory(1536), "1536");
    }
}
