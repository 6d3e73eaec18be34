//! CSV cells, safe to open in a spreadsheet.
//!
//! Every field is quoted when it holds a comma, quote or line break; a text
//! cell starting with `=`, `+`, `-`, `@`, tab or carriage return gets a
//! leading `'` so spreadsheets show it instead of running it as a formula
//! (OWASP's CSV-injection advice). Numbers are written as they are.

/// A text cell.
pub fn text(value: &str) -> String {
    let mut t = value.to_owned();
    if t.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        t.insert(0, '\'');
    }
    quote(t)
}

/// A number (or any cell that must not be defused).
pub fn number(value: &str) -> String {
    quote(value.to_owned())
}

fn quote(t: String) -> String {
    if t.contains([',', '"', '\n', '\r']) || t.starts_with('\'') {
        format!("\"{}\"", t.replace('"', "\"\""))
    } else {
        t
    }
}

/// One line from cells already escaped.
pub fn line(cells: &[String]) -> String {
    let mut s = cells.join(",");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_defused() {
        assert_eq!(text("plain"), "plain");
        assert_eq!(text("a,b"), "\"a,b\"");
        assert_eq!(text("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(text("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(text("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(number("-5"), "-5");
    }
}
