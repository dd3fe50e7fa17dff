//! Kubernetes resource quantities (`100G`, `1Gi`, `500m`, `1e3`), checked without a Kubernetes client.

/// Checks `text` against the Kubernetes quantity grammar.
///
/// # Errors
/// A message saying what a quantity looks like.
pub fn check(text: &str) -> Result<(), String> {
    let expected = || {
        format!(
            "`{text}` is not a quantity: expected a number with an optional suffix such as 500m, 100G or 1Gi"
        )
    };
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let digits_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(digits_end);
    let valid_number = !number.is_empty() && number != "." && number.matches('.').count() <= 1;
    if valid_number && is_suffix(suffix) {
        Ok(())
    } else {
        Err(expected())
    }
}

/// Checks that `text` is a quantity greater than zero.
///
/// # Errors
/// A message saying what was expected.
pub fn check_positive(text: &str) -> Result<(), String> {
    check(text)?;
    let zero = text
        .trim_start_matches(['+', '0', '.'])
        .chars()
        .next()
        .is_none_or(|c| !c.is_ascii_digit());
    if text.starts_with('-') || zero {
        Err(format!("`{text}` must be greater than zero"))
    } else {
        Ok(())
    }
}

fn is_suffix(suffix: &str) -> bool {
    const SUFFIXES: [&str; 17] = [
        "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E", "K",
    ];
    if SUFFIXES.contains(&suffix) && suffix != "K" {
        return true;
    }
    let exponent = suffix
        .strip_prefix(['e', 'E'])
        .map(|e| e.strip_prefix(['+', '-']).unwrap_or(e));
    exponent.is_some_and(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kubernetes_quantities() {
        for q in ["100G", "1Gi", "500m", "0.5", "1e3", "2E-2", "+3Ki", ".5"] {
            assert!(check(q).is_ok(), "{q}");
        }
    }

    #[test]
    fn rejects_what_kubernetes_rejects() {
        for q in ["", "G", "100GB", "1.2.3", "ten", "1K", "1e", "."] {
            assert!(check(q).is_err(), "{q}");
        }
    }

    #[test]
    fn positive_sizes() {
        assert!(check_positive("1Gi").is_ok());
        assert!(check_positive("0").is_err());
        assert!(check_positive("0Gi").is_err());
        assert!(check_positive("-1Gi").is_err());
        assert!(check_positive("0.5Gi").is_ok());
    }
}
