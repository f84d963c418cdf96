//! Quoted field names: `` headers.`content-type` `` selects a map key or field whose name is not
//! a CEL identifier (CEL's escaped identifiers). The cel crate's grammar knows the token but its
//! parser refuses it, so a condition is parsed in three steps: each quoted name is swapped for a
//! placeholder identifier ([`hide`]), the text is parsed, and the placeholders in the tree are
//! turned back into the names they stand for ([`restore`]).

use cel::common::ast::{EntryExpr, Expr, IdedExpr};

/// The names a condition quotes, by placeholder.
#[derive(Debug, Default)]
pub struct Escaped {
    names: Vec<String>,
}

/// Prefix of the placeholders: two underscores, which no Avro field name a condition reads can
/// start with and still be confused (placeholders end with `__` too).
const PLACEHOLDER: &str = "__meshhost_quoted_";

/// The condition with every quoted name outside string literals and comments replaced by a
/// placeholder identifier, and the names. `Err` says what is wrong with a quoted name.
pub fn hide(source: &str) -> Result<(String, Escaped), String> {
    let mut out = String::with_capacity(source.len());
    let mut escaped = Escaped::default();
    let mut rest = source;
    while let Some(c) = rest.chars().next() {
        let skipped = match c {
            '"' | '\'' => string_literal_len(rest, false),
            'r' | 'R' if starts_with_quote(&rest[1..]) => 1 + string_literal_len(&rest[1..], true),
            '/' if rest.starts_with("//") => rest.find('\n').unwrap_or(rest.len()),
            '`' => {
                let Some(end) = rest[1..].find('`') else {
                    return Err("a quoted name (`...`) is not closed".into());
                };
                let name = &rest[1..1 + end];
                if name.is_empty() || !name.chars().all(is_quotable) {
                    return Err(format!("quoted name `{name}`: may hold only letters, digits, spaces and _ . - /"));
                }
                out.push_str(&format!("{PLACEHOLDER}{}__", escaped.names.len()));
                escaped.names.push(name.to_owned());
                rest = &rest[end + 2..];
                continue;
            }
            // Identifiers and numbers whole, so that `br'x'` or `ar'` are not taken for a string.
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let word = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
                match &rest[..word] {
                    "b" | "B" if starts_with_quote(&rest[1..]) => 1 + string_literal_len(&rest[1..], false),
                    "br" | "bR" | "Br" | "BR" | "rb" | "rB" | "Rb" | "RB" if starts_with_quote(&rest[2..]) => {
                        2 + string_literal_len(&rest[2..], true)
                    }
                    _ => word,
                }
            }
            c => c.len_utf8(),
        };
        out.push_str(&rest[..skipped]);
        rest = &rest[skipped..];
    }
    Ok((out, escaped))
}

/// Put the quoted names back where [`hide`] put placeholders: field selections and message
/// fields. A placeholder anywhere else (a bare `` `a-b` ``, which CEL does not allow) is an error.
pub fn restore(expr: &mut IdedExpr, escaped: &Escaped) -> Result<(), String> {
    if escaped.names.is_empty() {
        return Ok(());
    }
    match &mut expr.expr {
        Expr::Unspecified | Expr::Literal(_) => Ok(()),
        Expr::Ident(name) => match escaped.name(name) {
            Some(quoted) => Err(format!(
                "`{quoted}`: a quoted name selects a field or key, as in m.`{quoted}`; it cannot stand alone"
            )),
            None => Ok(()),
        },
        Expr::Select(select) => {
            if let Some(name) = escaped.name(&select.field) {
                select.field = name.to_owned();
            }
            restore(&mut select.operand, escaped)
        }
        Expr::Call(call) => {
            if let Some(target) = &mut call.target {
                restore(target, escaped)?;
            }
            call.args.iter_mut().try_for_each(|arg| restore(arg, escaped))
        }
        Expr::List(list) => list.elements.iter_mut().try_for_each(|e| restore(e, escaped)),
        Expr::Map(map) => map.entries.iter_mut().try_for_each(|entry| restore_entry(&mut entry.expr, escaped)),
        Expr::Struct(s) => s.entries.iter_mut().try_for_each(|entry| restore_entry(&mut entry.expr, escaped)),
        Expr::Comprehension(c) => {
            for part in [&mut c.iter_range, &mut c.accu_init, &mut c.loop_cond, &mut c.loop_step, &mut c.result] {
                restore(part, escaped)?;
            }
            Ok(())
        }
    }
}

fn restore_entry(entry: &mut EntryExpr, escaped: &Escaped) -> Result<(), String> {
    match entry {
        EntryExpr::StructField(field) => {
            if let Some(name) = escaped.name(&field.field) {
                field.field = name.to_owned();
            }
            restore(&mut field.value, escaped)
        }
        EntryExpr::MapEntry(entry) => {
            restore(&mut entry.key, escaped)?;
            restore(&mut entry.value, escaped)
        }
    }
}

impl Escaped {
    /// The quoted name `identifier` is the placeholder of, if it is one.
    fn name(&self, identifier: &str) -> Option<&str> {
        let index = identifier.strip_prefix(PLACEHOLDER)?.strip_suffix("__")?;
        self.names.get(index.parse::<usize>().ok()?).map(String::as_str)
    }
}

/// The characters CEL allows between backquotes.
fn is_quotable(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ' ')
}

fn starts_with_quote(s: &str) -> bool {
    s.starts_with(['"', '\''])
}

/// The length of the string literal `s` starts with (`'...'`, `"..."`, `'''...'''` or
/// `"""..."""`); escapes are skipped unless `raw`. An unclosed literal runs to the end (the
/// parser reports it).
fn string_literal_len(s: &str, raw: bool) -> usize {
    let quote = &s[..1];
    let triple = quote.repeat(3);
    let delimiter = if s.starts_with(&triple) { triple.as_str() } else { quote };
    let mut i = delimiter.len();
    while i < s.len() {
        if s[i..].starts_with(delimiter) {
            return i + delimiter.len();
        }
        let c = s[i..].chars().next().expect("i is a char boundary");
        i += if c == '\\' && !raw { 1 + s[i + 1..].chars().next().map_or(0, char::len_utf8) } else { c.len_utf8() };
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_names_are_hidden_outside_literals_and_comments() {
        let (text, escaped) = hide("m.`content-type` == 'a`b`' && m.`x/y z` // `c`\n|| r'\\'' == \"`\"").unwrap();
        assert_eq!(text, "m.__meshhost_quoted_0__ == 'a`b`' && m.__meshhost_quoted_1__ // `c`\n|| r'\\'' == \"`\"");
        assert_eq!(escaped.names, ["content-type", "x/y z"]);
        let (text, _) = hide("b'`' + '''it's `' ''' + br\"\\\" + `a`").unwrap();
        assert_eq!(text, "b'`' + '''it's `' ''' + br\"\\\" + __meshhost_quoted_0__");
    }

    #[test]
    fn bad_quoted_names_are_refused() {
        assert_eq!(hide("m.`a").unwrap_err(), "a quoted name (`...`) is not closed");
        assert_eq!(hide("m.`` == 1").unwrap_err(), "quoted name ``: may hold only letters, digits, spaces and _ . - /");
        assert!(hide("m.`a+b`").unwrap_err().starts_with("quoted name `a+b`:"));
    }
}
