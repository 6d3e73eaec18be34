//! CSV lines, safe to open in a spreadsheet.
//!
//! Lines are written by the `csv` crate (RFC 4180: a field is quoted when
//! it holds a comma, quote or line break, quotes doubled). Before that, a
//! text cell starting with `=`, `+`, `-`, `@`, tab or carriage return gets
//! a leading `'` so spreadsheets show it instead of running it as a formula
//! (OWASP's CSV-injection advice). Numbers are written as they are.

/// A text cell, defused.
pub fn text(value: &str) -> String {
    let mut t = value.to_owned();
    if t.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        t.insert(0, '\'');
    }
    t
}

/// A number (or any cell that must not be defused).
pub fn number(value: &str) -> String {
    value.to_owned()
}

/// One line (ending in `\n`) of cells already made by [`text`] or [`number`].
pub fn line(cells: &[String]) -> String {
    let mut writer = ::csv::WriterBuilder::new().terminator(::csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    // Writing to memory fails only if the cells are not one record, which a
    // slice of strings always is.
    if writer.write_record(cells).is_err() {
        return "\n".to_owned();
    }
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(cell: String) -> String {
        line(&[cell]).trim_end_matches('\n').to_owned()
    }

    #[test]
    fn cells_are_quoted_and_defused() {
        assert_eq!(one(text("plain")), "plain");
        assert_eq!(one(text("a,b")), "\"a,b\"");
        assert_eq!(one(text("say \"hi\"")), "\"say \"\"hi\"\"\"");
        assert_eq!(one(text("=HYPERLINK(\"x\")")), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(one(text("@SUM(A1)")), "'@SUM(A1)");
        assert_eq!(one(number("-5")), "-5");
        assert_eq!(line(&[text("a"), String::new(), number("1.5")]), "a,,1.5\n");
        assert_eq!(one(text("two\nlines")), "\"two\nlines\"");
    }
}
