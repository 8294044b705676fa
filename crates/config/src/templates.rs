//! Placeholders inside tool templates, found statically so that a typo is an
//! error when the agent is validated rather than a broken call in production.
//!
//! - `{name}` in URLs, headers, query values and body templates is replaced by
//!   the argument `name`; `name` is a letter or `_`, then letters, digits, `_`
//!   or `-` (the grammar `rein-tools` fills templates with). Braces around
//!   anything else are literal text.
//! - `${VAR}` in headers and query values is read from the environment when
//!   the call is made, so secrets never sit in agent files.
//! - `:name` in SQL binds the argument `name` (SQLite's `@name` and `$name`
//!   too). String literals, quoted identifiers, comments and `::` casts are
//!   skipped.

/// One placeholder found in a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Placeholder {
    /// `{name}`: an argument.
    Param(String),
    /// `${NAME}`: an environment variable.
    Env(String),
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `name` is a valid environment variable name.
pub(crate) fn is_ident(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(is_ident_start) && chars.all(is_ident_char)
}

/// Whether `name` is a valid `{param}` name.
fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(is_ident_start) && chars.all(|c| is_ident_char(c) || c == '-')
}

/// The template with its placeholders removed: what is left is literal text.
pub(crate) fn literal_text(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '$']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let skip = tail
            .strip_prefix("${")
            .and_then(|after| after.find('}').filter(|end| is_ident(&after[..*end])).map(|end| end + 3))
            .or_else(|| {
                tail.strip_prefix('{')
                    .and_then(|after| after.find('}').filter(|end| is_param_name(&after[..*end])).map(|end| end + 2))
            });
        match skip {
            Some(len) => rest = &tail[len..],
            None => {
                let ch = tail.chars().next().map_or(1, char::len_utf8);
                out.push_str(&tail[..ch]);
                rest = &tail[ch..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Finds `{param}` and `${ENV}` placeholders in a text template.
pub(crate) fn scan_text(template: &str) -> Result<Vec<Placeholder>, String> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '$']) {
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                return Err(format!("unterminated environment reference \"{}\": expected ${{NAME}}", shorten(tail)));
            };
            let name = &after[..end];
            if !is_ident(name) {
                return Err(format!(
                    "invalid environment variable name \"{name}\" in \"${{{name}}}\": use letters, digits and _"
                ));
            }
            found.push(Placeholder::Env(name.to_string()));
            rest = &after[end + 1..];
        } else if let Some(after) = tail.strip_prefix('{') {
            match after.find('}') {
                Some(end) if is_param_name(&after[..end]) => {
                    found.push(Placeholder::Param(after[..end].to_string()));
                    rest = &after[end + 1..];
                }
                _ => rest = after,
            }
        } else {
            // A lone `$`.
            rest = &tail[1..];
        }
    }
    Ok(found)
}

fn shorten(text: &str) -> String {
    text.chars().take(24).collect()
}

/// What a SQL statement uses and does, as far as validation cares.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SqlScan {
    /// `:name` placeholders, in order, without repeats.
    pub params: Vec<String>,
    /// A positional `?` placeholder was found; rein binds by name only.
    pub positional: bool,
    /// The statement's first keyword, lower-cased (`select`, `insert`, ...).
    pub first_keyword: String,
    /// Text follows a `;`: more than one statement.
    pub multiple_statements: bool,
}

/// Statements that change data or schema. A read-mode tool must not start
/// with one of these.
pub(crate) const WRITE_KEYWORDS: &[&str] = &[
    "insert", "update", "delete", "replace", "upsert", "merge", "create", "drop", "alter", "truncate", "attach",
    "detach", "vacuum", "reindex", "grant", "revoke", "pragma",
];

/// Scans SQL for `:name` placeholders, skipping literals and comments.
pub(crate) fn scan_sql(sql: &str) -> SqlScan {
    let mut scan = SqlScan::default();
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    let mut ended = false;
    let mut seen_code = false;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\'' | '"' | '`' | '[' => {
                let close = if c == '[' { ']' } else { c };
                i += 1;
                while i < chars.len() {
                    if chars[i] == close {
                        // A doubled quote is an escaped quote inside the literal.
                        if close != ']' && chars.get(i + 1) == Some(&close) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
                mark(&mut scan, &mut ended, &mut seen_code);
                continue;
            }
            '-' if next == Some('-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if next == Some('*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
                continue;
            }
            ':' if next == Some(':') => {
                i += 2;
                continue;
            }
            ':' | '@' | '$' if next.is_some_and(is_ident_start) => {
                let start = i + 1;
                i = start;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if !scan.params.contains(&name) {
                    scan.params.push(name);
                }
                mark(&mut scan, &mut ended, &mut seen_code);
                continue;
            }
            '?' => scan.positional = true,
            ';' => {
                ended = true;
                i += 1;
                continue;
            }
            _ => {}
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if is_ident_start(c) && !seen_code {
            let start = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            scan.first_keyword = chars[start..i].iter().collect::<String>().to_ascii_lowercase();
            mark(&mut scan, &mut ended, &mut seen_code);
            continue;
        }
        mark(&mut scan, &mut ended, &mut seen_code);
        i += 1;
    }
    scan
}

/// Records that code (not whitespace or a comment) was seen; code after a
/// `;` means a second statement.
fn mark(scan: &mut SqlScan, ended: &mut bool, seen_code: &mut bool) {
    if *ended {
        scan.multiple_statements = true;
    }
    *seen_code = true;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_placeholders() {
        let found = scan_text("http://h/{a}/x?{b-c}&t=${TOKEN}&j={not valid}&{}").unwrap();
        assert_eq!(
            found,
            vec![Placeholder::Param("a".into()), Placeholder::Param("b-c".into()), Placeholder::Env("TOKEN".into())]
        );
        assert_eq!(literal_text("http://h/{a}/x?t=${TOKEN}&j={not valid}"), "http://h//x?t=&j={not valid}");
        assert_eq!(literal_text("cost $5 {}"), "cost $5 {}");
        assert!(scan_text("Bearer ${TOKEN").is_err());
        assert!(scan_text("Bearer ${1X}").is_err());
        assert_eq!(scan_text("cost $5").unwrap(), vec![]);
    }

    #[test]
    fn sql_placeholders_skip_literals_comments_and_casts() {
        let scan = scan_sql(
            "-- find :nope\nSELECT id, ':also_not' AS x, \"col:umn\" FROM t /* :hidden */ WHERE a = :email AND b = :n::int AND c = :email",
        );
        assert_eq!(scan.params, vec!["email".to_string(), "n".to_string()]);
        assert_eq!(scan_sql("SELECT 1 WHERE a = @a AND b = $b").params, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(scan.first_keyword, "select");
        assert!(!scan.multiple_statements);
        assert!(!scan.positional);
    }

    #[test]
    fn sql_statement_shape() {
        let scan = scan_sql("insert into t values (?);");
        assert_eq!(scan.first_keyword, "insert");
        assert!(scan.positional);
        assert!(!scan.multiple_statements);
        assert!(scan_sql("select 1; drop table t").multiple_statements);
        assert!(!scan_sql("select 1; -- done\n").multiple_statements);
        assert_eq!(scan_sql("  /* c */ WITH x AS (select 1) select * from x").first_keyword, "with");
    }
}
