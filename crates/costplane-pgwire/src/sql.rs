//! The little SQL this crate reads itself: a lexer that knows where strings,
//! quoted identifiers, comments and `$n` parameters are, used to bind
//! parameters as literals, to split a simple query into statements, to
//! answer the session statements clients send (`BEGIN`, `SET`, `SHOW`) and
//! to rewrite PostgreSQL-only spellings (`version()`, `current_setting()`,
//! psql's `OPERATOR(pg_catalog.~)`) into what the engine reads.
//!
//! Nothing here decides whether a statement writes: that is the engine's.

use crate::PgError;

/// The PostgreSQL version clients are told (`server_version`).
pub const SERVER_VERSION: &str = "16.4";
pub const SERVER_VERSION_NUM: &str = "160004";

/// One lexical piece of SQL text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// Words, numbers, operators and whitespace.
    Code,
    /// A string literal (`'...'`, `E'...'`, `$tag$...$tag$`).
    Str,
    /// A quoted identifier.
    Ident,
    /// A comment.
    Comment,
    /// A parameter `$n` (1-based).
    Param(usize),
    /// A `;` outside strings and comments.
    Semicolon,
}

/// Splits `sql` into pieces: byte ranges with their kind.
pub fn lex(sql: &str) -> Vec<(Piece, std::ops::Range<usize>)> {
    let b = sql.as_bytes();
    let mut out: Vec<(Piece, std::ops::Range<usize>)> = Vec::new();
    let (mut i, mut code_start) = (0usize, 0usize);
    let flush = |out: &mut Vec<(Piece, std::ops::Range<usize>)>, from: usize, to: usize| {
        if to > from {
            out.push((Piece::Code, from..to));
        }
    };
    while i < b.len() {
        let c = b[i];
        let prev_word = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        let (piece, end) = if c == b'\'' {
            // E'..' takes backslash escapes; 'it''s' doubles quotes.
            let escapes =
                i > 0 && (b[i - 1] == b'e' || b[i - 1] == b'E') && !(i > 1 && (b[i - 2].is_ascii_alphanumeric() || b[i - 2] == b'_'));
            let mut j = i + 1;
            loop {
                match b.get(j) {
                    None => break,
                    Some(b'\\') if escapes => j += 2,
                    Some(b'\'') if b.get(j + 1) == Some(&b'\'') => j += 2,
                    Some(b'\'') => {
                        j += 1;
                        break;
                    }
                    Some(_) => j += 1,
                }
            }
            (Some(Piece::Str), j.min(b.len()))
        } else if c == b'"' {
            let mut j = i + 1;
            loop {
                match b.get(j) {
                    None => break,
                    Some(b'"') if b.get(j + 1) == Some(&b'"') => j += 2,
                    Some(b'"') => {
                        j += 1;
                        break;
                    }
                    Some(_) => j += 1,
                }
            }
            (Some(Piece::Ident), j.min(b.len()))
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            let j = sql[i..].find('\n').map_or(b.len(), |n| i + n + 1);
            (Some(Piece::Comment), j)
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            // PostgreSQL's block comments nest.
            let (mut j, mut depth) = (i + 2, 1usize);
            while j < b.len() && depth > 0 {
                if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                    depth += 1;
                    j += 2;
                } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            (Some(Piece::Comment), j.min(b.len()))
        } else if c == b'$' && !prev_word {
            let digits = b[i + 1..].iter().take_while(|d| d.is_ascii_digit()).count();
            if digits > 0 {
                let n = sql[i + 1..i + 1 + digits].parse().unwrap_or(usize::MAX);
                (Some(Piece::Param(n)), i + 1 + digits)
            } else {
                // $tag$ ... $tag$ (tag may be empty).
                let tag_len = b[i + 1..].iter().take_while(|d| d.is_ascii_alphanumeric() || **d == b'_').count();
                if b.get(i + 1 + tag_len) == Some(&b'$') {
                    let tag = &sql[i..i + tag_len + 2];
                    let body = i + tag.len();
                    let end = sql[body..].find(tag).map_or(b.len(), |n| body + n + tag.len());
                    (Some(Piece::Str), end)
                } else {
                    (None, i + 1)
                }
            }
        } else if c == b';' {
            (Some(Piece::Semicolon), i + 1)
        } else {
            (None, i + 1)
        };
        if let Some(p) = piece {
            flush(&mut out, code_start, i);
            out.push((p, i..end));
            code_start = end;
        }
        i = end.max(i + 1);
    }
    flush(&mut out, code_start, b.len());
    out
}

/// The statements of a simple query (empty ones dropped).
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    for (piece, range) in lex(sql) {
        if piece == Piece::Semicolon {
            out.push(sql[start..range.start].to_owned());
            start = range.end;
        }
    }
    out.push(sql[start..].to_owned());
    out.into_iter().filter(|s| !without_comments(s).trim().is_empty()).collect()
}

/// `sql` with its comments replaced by a space.
pub fn without_comments(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    for (piece, range) in lex(sql) {
        if piece == Piece::Comment {
            out.push(' ');
        } else {
            out.push_str(&sql[range]);
        }
    }
    out
}

/// The highest `$n` in `sql` (0 when there is none).
pub fn parameter_count(sql: &str) -> usize {
    lex(sql).iter().filter_map(|(p, _)| if let Piece::Param(n) = p { Some(*n) } else { None }).max().unwrap_or(0)
}

/// A bound parameter: its value as text (`None` is NULL) and the SQL type
/// to cast it to (`None` leaves a string literal, which the engine casts
/// to what it is compared with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub value: Option<String>,
    pub cast: Option<&'static str>,
}

/// A string literal of `value` whatever it holds: quotes doubled, no
/// backslash escapes (standard conforming strings). NUL is refused.
pub fn quote_literal(value: &str) -> Result<String, PgError> {
    if value.contains('\0') {
        return Err(PgError::Value("a parameter holds a NUL character".into()));
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// `sql` with every `$n` replaced by the literal of `params[n - 1]`.
pub fn bind_parameters(sql: &str, params: &[Bound]) -> Result<String, PgError> {
    let mut out = String::with_capacity(sql.len() + 16 * params.len());
    for (piece, range) in lex(sql) {
        match piece {
            Piece::Param(n) => {
                let p = n
                    .checked_sub(1)
                    .and_then(|i| params.get(i))
                    .ok_or_else(|| PgError::Value(format!("the statement uses ${n} but {} parameters were bound", params.len())))?;
                // Spaces around: `x=$1` must not become `x='..'` glued to a word.
                match (&p.value, p.cast) {
                    (None, _) => out.push_str(" NULL "),
                    (Some(v), None) => {
                        out.push(' ');
                        out.push_str(&quote_literal(v)?);
                        out.push(' ');
                    }
                    (Some(v), Some(cast)) => out.push_str(&format!(" CAST({} AS {cast}) ", quote_literal(v)?)),
                }
            }
            _ => out.push_str(&sql[range]),
        }
    }
    Ok(out)
}

/// What a statement is, as far as this endpoint answers it itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    /// `BEGIN`, `START TRANSACTION`: answered with this tag.
    Begin,
    /// `COMMIT`, `END`, `ROLLBACK`, `ABORT`: answered with this tag.
    End(&'static str),
    /// `SET`, `RESET`, `DISCARD`, `DEALLOCATE`, `CLOSE`: accepted, no effect.
    Tag(&'static str),
    /// `SHOW name`: one row.
    Show(String),
    /// Anything else: a query for the engine.
    Query,
}

fn first_words(sql: &str, n: usize) -> Vec<String> {
    without_comments(sql)
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty())
        .take(n)
        .map(str::to_ascii_uppercase)
        .collect()
}

/// Classifies one statement.
pub fn session_statement(sql: &str) -> Session {
    let words = first_words(sql, 2);
    let first = words.first().map_or("", String::as_str);
    match first {
        "BEGIN" | "START" => Session::Begin,
        "COMMIT" | "END" => Session::End("COMMIT"),
        "ROLLBACK" | "ABORT" => Session::End("ROLLBACK"),
        "SET" => Session::Tag("SET"),
        "RESET" => Session::Tag("RESET"),
        "DISCARD" => Session::Tag("DISCARD ALL"),
        "DEALLOCATE" => Session::Tag("DEALLOCATE"),
        "CLOSE" => Session::Tag("CLOSE CURSOR"),
        "SHOW" => Session::Show(
            without_comments(sql).trim().trim_end_matches(';')[4..].trim().trim_matches('"').to_ascii_lowercase().replace(' ', "_"),
        ),
        _ => Session::Query,
    }
}

/// The value of a PostgreSQL setting clients ask about.
pub fn setting(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "server_version" => SERVER_VERSION,
        "server_version_num" => SERVER_VERSION_NUM,
        "server_encoding" | "client_encoding" => "UTF8",
        "standard_conforming_strings" | "integer_datetimes" | "default_transaction_read_only" | "transaction_read_only" => "on",
        "timezone" | "time_zone" | "log_timezone" => "UTC",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "search_path" => "\"$user\", public",
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "max_identifier_length" => "63",
        "application_name" => "",
        "is_superuser" => "off",
        "extra_float_digits" => "3",
        "lc_collate" | "lc_ctype" | "lc_messages" | "lc_monetary" | "lc_numeric" | "lc_time" => "C.UTF-8",
        "bytea_output" => "hex",
        _ => return None,
    })
}

fn word_at(code: &str, at: usize) -> bool {
    at == 0 || !code.as_bytes()[at - 1].is_ascii_alphanumeric() && code.as_bytes()[at - 1] != b'_' && code.as_bytes()[at - 1] != b'.'
}

/// PostgreSQL spellings the engine does not read, rewritten:
/// `version()` and `current_setting('<known setting>')` become literals,
/// psql's `OPERATOR(pg_catalog.~)` becomes `~`, `COLLATE pg_catalog.default`
/// goes, `quote_ident(x)` becomes `(x)`, `pg_catalog.` before those
/// functions goes. Strings, identifiers and comments are left alone.
pub fn rewrite(sql: &str, version_text: &str) -> Result<String, PgError> {
    let pieces = lex(sql);
    let mut out = String::with_capacity(sql.len());
    let mut skip_next_str = false;
    for (idx, (piece, range)) in pieces.iter().enumerate() {
        let text = &sql[range.clone()];
        match piece {
            Piece::Code => {
                let mut code = text.to_owned();
                for (from, to) in [("OPERATOR(pg_catalog.~)", "~"), ("OPERATOR(pg_catalog.!~)", "!~"), ("COLLATE pg_catalog.default", "")] {
                    code = replace_ci(&code, from, to);
                }
                code = replace_ci(&code, "pg_catalog.version()", "version()");
                code = replace_ci(&code, "pg_catalog.current_setting(", "current_setting(");
                code = replace_ci(&code, "pg_catalog.quote_ident(", "quote_ident(");
                code = replace_word_ci(&code, "quote_ident(", "(");
                let lit = quote_literal(version_text)?;
                code = replace_version(&code, &lit, idx + 1 == pieces.len());
                // current_setting('x') spans a code piece, a string, a code piece.
                let lower = code.to_ascii_lowercase();
                if lower.trim_end().ends_with("current_setting(") {
                    if let (Some((Piece::Str, s)), Some((Piece::Code, after))) = (pieces.get(idx + 1), pieces.get(idx + 2)) {
                        let name = sql[s.clone()].trim_matches('\'');
                        if let (Some(value), true) = (setting(name), sql[after.clone()].trim_start().starts_with(')')) {
                            let at = lower.rfind("current_setting(").unwrap_or(0);
                            code.truncate(at);
                            code.push_str(&quote_literal(value)?);
                            skip_next_str = true;
                            out.push_str(&code);
                            continue;
                        }
                    }
                }
                if skip_next_str {
                    skip_next_str = false;
                    // Drop the `)` that closed current_setting(.
                    let trimmed = code.trim_start();
                    code = trimmed.strip_prefix(')').unwrap_or(trimmed).to_owned();
                    code.insert(0, ' ');
                }
                out.push_str(&code);
            }
            Piece::Str if skip_next_str => {}
            _ => out.push_str(text),
        }
    }
    Ok(out)
}

/// `version()` as `literal`, named `version` as PostgreSQL names it when
/// nothing else names it (it ends a select item: `,`, `FROM`, `;` or the end).
fn replace_version(code: &str, literal: &str, last_piece: bool) -> String {
    let lower = code.to_ascii_lowercase();
    let mut out = String::with_capacity(code.len() + literal.len());
    let mut last = 0;
    for (at, _) in lower.match_indices("version()") {
        if !word_at(code, at) {
            continue;
        }
        let rest = lower[at + 9..].trim_start();
        let unnamed = (rest.is_empty() && last_piece)
            || rest.starts_with(',')
            || rest.starts_with(';')
            || rest.strip_prefix("from").is_some_and(|r| r.starts_with(|c: char| c.is_whitespace()));
        out.push_str(&code[last..at]);
        out.push_str(literal);
        if unnamed {
            out.push_str(" AS version");
        }
        last = at + 9;
    }
    out.push_str(&code[last..]);
    out
}

fn replace_ci(haystack: &str, from: &str, to: &str) -> String {
    let lower = haystack.to_ascii_lowercase();
    let needle = from.to_ascii_lowercase();
    let mut out = String::with_capacity(haystack.len());
    let mut last = 0;
    for (at, _) in lower.match_indices(&needle) {
        out.push_str(&haystack[last..at]);
        out.push_str(to);
        last = at + needle.len();
    }
    out.push_str(&haystack[last..]);
    out
}

/// [`replace_ci`] only where `from` starts a word.
fn replace_word_ci(haystack: &str, from: &str, to: &str) -> String {
    let lower = haystack.to_ascii_lowercase();
    let needle = from.to_ascii_lowercase();
    let mut out = String::with_capacity(haystack.len());
    let mut last = 0;
    for (at, _) in lower.match_indices(&needle) {
        if !word_at(haystack, at) {
            continue;
        }
        out.push_str(&haystack[last..at]);
        out.push_str(to);
        last = at + needle.len();
    }
    out.push_str(&haystack[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &str) -> Bound {
        Bound { value: Some(v.to_owned()), cast: None }
    }

    #[test]
    fn parameters_become_literals_that_cannot_escape() {
        let sql = "SELECT * FROM t WHERE a = $1 AND b = '$1' AND \"$2\" = $2 -- $1\n AND c = $$ $1 $$";
        let bound = bind_parameters(sql, &[text("x' OR 1=1 --"), Bound { value: Some("5".into()), cast: Some("BIGINT") }]).unwrap();
        assert_eq!(
            bound,
            "SELECT * FROM t WHERE a =  'x'' OR 1=1 --'  AND b = '$1' AND \"$2\" =  CAST('5' AS BIGINT)  -- $1\n AND c = $$ $1 $$"
        );
        assert!(bind_parameters("SELECT $3", &[text("a")]).is_err());
        assert!(bind_parameters("SELECT $1", &[text("a\0")]).is_err());
        assert_eq!(bind_parameters("SELECT $1", &[Bound { value: None, cast: None }]).unwrap(), "SELECT  NULL ");
        // E'' strings skip backslash-escaped quotes.
        assert_eq!(bind_parameters(r"SELECT E'\' $1', $1", &[text("v")]).unwrap(), r"SELECT E'\' $1',  'v' ");
        assert_eq!(parameter_count("SELECT $2, $1, '$9'"), 2);
    }

    #[test]
    fn statements_split_outside_strings() {
        assert_eq!(split_statements("SELECT ';'; SELECT 2;;  -- x\n"), vec!["SELECT ';'", " SELECT 2"]);
        assert!(split_statements(" ; -- only a comment").is_empty());
    }

    #[test]
    fn session_statements_are_answered_here() {
        assert_eq!(session_statement("BEGIN READ ONLY"), Session::Begin);
        assert_eq!(session_statement("commit;"), Session::End("COMMIT"));
        assert_eq!(session_statement("SET extra_float_digits = 3"), Session::Tag("SET"));
        assert_eq!(session_statement("SHOW TRANSACTION ISOLATION LEVEL"), Session::Show("transaction_isolation_level".into()));
        assert_eq!(session_statement("show standard_conforming_strings"), Session::Show("standard_conforming_strings".into()));
        assert_eq!(session_statement("/* hi */ SELECT 1"), Session::Query);
        assert_eq!(session_statement("INSERT INTO t VALUES (1)"), Session::Query);
    }

    #[test]
    fn postgres_spellings_are_rewritten() {
        let v = "PostgreSQL 16.4 (costplane)";
        assert_eq!(rewrite("SELECT version()", v).unwrap(), "SELECT 'PostgreSQL 16.4 (costplane)' AS version");
        assert_eq!(rewrite("SELECT version() AS v, 1", v).unwrap(), "SELECT 'PostgreSQL 16.4 (costplane)' AS v, 1");
        assert_eq!(rewrite("SELECT version(), 1", v).unwrap(), "SELECT 'PostgreSQL 16.4 (costplane)' AS version, 1");
        assert_eq!(
            rewrite("SELECT current_setting('server_version_num')::int/100 as version", v).unwrap(),
            "SELECT '160004' ::int/100 as version"
        );
        assert_eq!(rewrite("SELECT 'version()'", v).unwrap(), "SELECT 'version()'");
        assert_eq!(rewrite("SELECT myversion()", v).unwrap(), "SELECT myversion()");
        assert_eq!(
            rewrite("WHERE c.relname OPERATOR(pg_catalog.~) '^(x)$' COLLATE pg_catalog.default", v).unwrap(),
            "WHERE c.relname ~ '^(x)$' "
        );
        assert_eq!(
            rewrite("SELECT quote_ident(table_name) AS \"table\" FROM information_schema.tables", v).unwrap(),
            "SELECT (table_name) AS \"table\" FROM information_schema.tables"
        );
        // An unknown setting is left for the engine to answer.
        assert_eq!(rewrite("SELECT current_setting('threads')", v).unwrap(), "SELECT current_setting('threads')");
    }
}
