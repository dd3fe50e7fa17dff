//! Aligned text tables for the CLI's listings.

use std::fmt::Write as _;

/// `rows` under `headers`, each column as wide as its widest cell, two spaces apart.
pub fn render<const N: usize>(headers: [&str; N], rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(headers.map(String::from)).chain(rows.iter().cloned()) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_to_the_widest_cell() {
        let out = super::render(["A", "LONG"], &[["xyz".into(), "1".into()]]);
        assert_eq!(out, "A    LONG\nxyz  1\n");
    }
}
